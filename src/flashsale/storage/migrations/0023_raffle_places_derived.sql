-- A raffle's places derived, not written (issue 27): the draw's step wrote
-- each entry's place (an UPDATE of every entry, a new row version each).
-- Over 1,000,000 entries that UPDATE was half the draw: 11.3 s with it,
-- 5.8 s without it (`flashsale bench --draw 1000000`, quiet machine,
-- docs/benchmarks.md). Places are contiguous in draw order, so each step
-- now marks its first entry and every 1,000th after it with their places
-- (raffle_draw_marks), and raffle_place() counts from the nearest mark:
-- under 1,000 entries of raffle_entries_order_idx. The entries are never
-- updated any more; their pages are filled again. Also: a raffle resumed
-- after its sale ended is drawn with no winners (raffle_start_draws).

-- Places a draw marked: the first entry of each step and every 1,000th
-- after it (ticket, entrant), with its place. The draw's first mark is
-- place 1; marks are at most 1,000 places apart.
CREATE TABLE raffle_draw_marks (
    coupon_id bigint  NOT NULL,  -- no foreign key: coupons_forget_raffles says why
    ticket    bytea   NOT NULL,
    entrant   bytea   NOT NULL,
    place     integer NOT NULL,
    CONSTRAINT raffle_draw_marks_pkey PRIMARY KEY (coupon_id, ticket, entrant)
);

-- Draws already placed keep their places: any placed entry is a valid mark,
-- one every 1,000 places bounds each count as the drawer's marks do.
INSERT INTO raffle_draw_marks (coupon_id, ticket, entrant, place)
SELECT e.coupon_id, e.ticket, e.entrant, e.place
  FROM raffle_entries AS e
 WHERE e.place % 1000 = 1;

ALTER TABLE raffle_entries DROP COLUMN place;
ALTER TABLE raffle_entries SET (fillfactor = 100);

CREATE OR REPLACE FUNCTION coupons_forget_raffles() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        TRUNCATE raffle_entries, raffle_seeds, raffle_draws, raffle_draw_marks;
        RETURN NULL;
    END IF;
    DELETE FROM raffle_entries AS e USING old_coupons AS o WHERE e.coupon_id = o.id;
    DELETE FROM raffle_seeds AS s USING old_coupons AS o WHERE s.coupon_id = o.id;
    DELETE FROM raffle_draws AS d USING old_coupons AS o WHERE d.coupon_id = o.id;
    DELETE FROM raffle_draw_marks AS m USING old_coupons AS o WHERE m.coupon_id = o.id;
    RETURN NULL;
END
$$;

-- raffle_place: the place raffle p_coupon_id's draw gave the entry
-- (p_ticket, p_entrant), NULL while the draw has not reached it. The
-- nearest mark at or before the entry, plus the entries between them
-- (a range of raffle_entries_order_idx under 1,000 entries: marks are at
-- most 1,000 places apart).
-- Reads that show places do so once drawn_at is set (the draw done).
CREATE FUNCTION raffle_place(p_coupon_id bigint, p_ticket bytea, p_entrant bytea)
RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT m.place + (SELECT count(*)::integer FROM raffle_entries AS x
                       WHERE x.coupon_id = p_coupon_id
                         AND (x.ticket, x.entrant) >= (m.ticket, m.entrant)
                         AND (x.ticket, x.entrant) < (p_ticket, p_entrant))
      FROM raffle_draws AS d
     CROSS JOIN LATERAL (SELECT k.ticket, k.entrant, k.place FROM raffle_draw_marks AS k
                          WHERE k.coupon_id = p_coupon_id
                            AND (k.ticket, k.entrant) <= (p_ticket, p_entrant)
                          ORDER BY k.ticket DESC, k.entrant DESC
                          LIMIT 1) AS m
     WHERE d.coupon_id = p_coupon_id
       AND (p_ticket, p_entrant) <= (d.last_ticket, d.last_entrant)
$$;

-- raffle_draw_step: the next p_chunk places of a started draw, in one
-- short transaction (the caller's), under the coupon's row lock; progress in
-- raffle_draws in the same transaction, so a crash between steps resumes at
-- the next place and nobody is placed (or wins) twice. The progress row is
-- read after the lock, in a statement of its own (READ COMMITTED: it sees
-- every step committed before). The step's first entry and every 1,000th
-- after it are marked with their places (raffle_place counts from them). Places 1..winners get claims (reason
-- raffle_won), the others a waitlisted event with their place. The last
-- step sets drawn_at (the seed is published from then), records one
-- raffle_drawn event and hands units that came back meanwhile to the
-- waitlist. Out: true when the draw is done (or there is none), NULL when
-- another session is stepping it (class 27 of the advisory locks).
CREATE OR REPLACE FUNCTION raffle_draw_step(p_coupon_id bigint, p_chunk integer)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    c coupons%ROWTYPE;
    d raffle_draws%ROWTYPE;
    v_now timestamptz;
    v_users text[];
    v_tickets bytea[];
    v_entrants bytea[];
    v_count integer;
    v_won integer;
BEGIN
    -- One drawer steps a draw at a time; the others leave it to that one
    -- instead of queueing on the coupon's row (and on lock_timeout). A
    -- transaction-level lock: safe behind a transaction-mode pooler, and
    -- gone with a crashed step's transaction.
    IF NOT pg_try_advisory_xact_lock(27, (p_coupon_id % 2147483647)::integer) THEN
        RETURN NULL;
    END IF;
    SELECT * INTO c FROM coupons AS k WHERE k.id = p_coupon_id FOR UPDATE;
    SELECT * INTO d FROM raffle_draws AS r WHERE r.coupon_id = p_coupon_id;
    IF c.id IS NULL OR d.coupon_id IS NULL OR d.finished_at IS NOT NULL THEN
        RETURN true;
    END IF;
    v_now := clock_timestamp();
    SELECT array_agg(e.user_id ORDER BY e.ticket, e.entrant),
           array_agg(e.ticket ORDER BY e.ticket, e.entrant),
           array_agg(e.entrant ORDER BY e.ticket, e.entrant)
      INTO v_users, v_tickets, v_entrants
      FROM (SELECT x.user_id, x.ticket, x.entrant FROM raffle_entries AS x
             WHERE x.coupon_id = p_coupon_id
               AND (x.ticket, x.entrant) > (d.last_ticket, d.last_entrant)
             ORDER BY x.ticket, x.entrant
             LIMIT p_chunk) AS e;
    v_count := coalesce(cardinality(v_users), 0);
    IF v_count > 0 THEN
        -- Five subscripts of 5,000-element arrays a step: never quadratic.
        INSERT INTO raffle_draw_marks (coupon_id, ticket, entrant, place)
        SELECT p_coupon_id, v_tickets[i], v_entrants[i], d.placed + i
          FROM generate_series(1, v_count, 1000) AS i;
        v_won := greatest(0, least(v_count, d.winners - d.placed));
        IF v_won > 0 THEN
            PERFORM raffle_grant(c, v_users[1:v_won], 'raffle_won', v_now);
        END IF;
        IF v_won < v_count THEN
            PERFORM raffle_record(c.id, c.name, 'waitlisted', v_users[v_won + 1:v_count],
                                  ARRAY(SELECT jsonb_build_object('place', d.placed + v_won + i)
                                          FROM generate_series(1, v_count - v_won) AS i),
                                  v_now);
        END IF;
        UPDATE raffle_draws AS r
           SET placed = r.placed + v_count, last_ticket = v_tickets[v_count],
               last_entrant = v_entrants[v_count],
               promote_ticket = CASE WHEN v_won > 0 THEN v_tickets[v_won] ELSE r.promote_ticket END,
               promote_entrant = CASE WHEN v_won > 0 THEN v_entrants[v_won]
                                      ELSE r.promote_entrant END
         WHERE r.coupon_id = p_coupon_id;
        IF d.placed + v_count < d.entries THEN
            RETURN false;
        END IF;
    END IF;
    PERFORM raffle_finish(c, d, v_now);
    RETURN true;
END
$$;

-- A raffle paused across draw_at and resumed from ends_at on was drawn with
-- winners: claims granted after the sale's end. It is drawn with none now.

-- raffle_start_draws: the draw's freeze, by whichever instance gets there.
-- Up to p_limit raffles due (draw_at passed by clock_timestamp(), not drawn
-- yet), each FOR UPDATE SKIP LOCKED: a coupon whose batch or draw step holds
-- the row is left to the next tick. The row's newest version (FOR UPDATE
-- re-reads it) counts every entry committed before the lock; any batch after
-- the lock decides at a later clock, past draw_at: entries_closed. A paused
-- raffle whose draw has not started waits for its resume; resumed from
-- ends_at on, it is drawn with no winners (the sale is over: every entrant
-- waits, and nobody is promoted after ends_at). Out: the raffles
-- whose draw is to be stepped (started now, or earlier and unfinished: a
-- crash resumes here). The primary key of raffle_draws starts a draw once.
CREATE OR REPLACE FUNCTION raffle_start_draws(p_limit integer)
RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
    v record;
BEGIN
    FOR v IN
        SELECT c.id, c.active, c.remaining_amount, c.draw_entries, c.ends_at
          FROM coupons AS c
         WHERE c.allocation = 'raffle' AND c.drawn_at IS NULL AND c.draw_at <= clock_timestamp()
           -- A paused raffle not started yet is not even locked: however many
           -- wait, they never fill p_limit ahead of the ones to draw.
           AND (c.active OR EXISTS (SELECT 1 FROM raffle_draws AS d WHERE d.coupon_id = c.id))
         ORDER BY c.draw_at
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED
    LOOP
        IF v.active THEN
            INSERT INTO raffle_draws (coupon_id, entries, winners)
            VALUES (v.id, v.draw_entries,
                    CASE WHEN v.ends_at <= clock_timestamp() THEN 0
                         ELSE least(v.remaining_amount, v.draw_entries) END)
            ON CONFLICT (coupon_id) DO NOTHING;
        END IF;
        IF EXISTS (SELECT 1 FROM raffle_draws AS d WHERE d.coupon_id = v.id) THEN
            RETURN NEXT v.id;
        END IF;
    END LOOP;
END
$$;
