-- The schema as the migrations leave it, in one place to read: what
-- migrations/0001..N build step by step. The service applies the migrations,
-- never this file; a test builds a database from this file and compares it
-- with a migrated one, so a migration not reflected here fails CI. The
-- queries run at request time are in queries.sql.
--
-- Contents
--   1. Coupons            coupons, sale_refusal, coupon_status, change_coupon
--   1b. Raffles          raffle_seeds, raffle_entries, raffle_draws,
--                         raffle_draw_marks, raffle_enter, raffle_refusal,
--                         raffle_promote, raffle_start_draws, raffle_place,
--                         raffle_draw_step, raffle_finish, change_raffle
--   2. Claims and stock   claims, claim_history, claims_take_stock,
--                         claims_return_stock, claims_follow_expiry,
--                         redeem_claim; a claim tied to its coupon:
--                         claims_coupon_fkey, claims_forbid_update,
--                         claims_fill_coupon
--   3. Idempotency keys   idempotency_keys, take_idempotency_key,
--                         stored_keys, unstored_arrivals, coupon_part_decision,
--                         keep_claim_keys, keep_release_keys
--   4. The claim functions  claim_many, claim_many_keyed,
--                         claim_many_new_keys, claim_many_coupons,
--                         claim_many_coupons_keyed, sold_out_batch,
--                         sold_out_coupons
--   5. Holds and sweeping expire_coupon_holds, expire_holds, coupon_state,
--                         live_claims
--   6. Events             events, event_actor_data, coupons_number_creation,
--                         coupons_record_creation, coupons_record_change,
--                         claims_record_redeems
--   7. Webhooks           webhooks, webhook_streams, queue_webhook_events,
--                         lease_webhook_deliveries, webhook_delivered
--   8. Sessions           service_timeouts, apply_service_timeouts,
--                         reset_role_timeouts, store_service_timeouts
--
-- Lock order, everywhere: a coupon's row first (FOR UPDATE; several coupons'
-- rows in coupons.id order, in one statement: claim_many_coupons), then its
-- claim rows, then idempotency key rows in key order; webhook streams are locked
-- on their own, never with a coupon's.

-- =========================================================================
-- 1. Coupons
-- =========================================================================

-- A coupon: its name, stock and sale window. The invariants live here,
-- not only in code:
--   * stock is bounded: 0 <= remaining_amount <= amount (CHECKs below);
--   * one claim per user per coupon (primary key of claims);
--   * amount - remaining_amount = number of claims (held or redeemed; a hold
--     past expiry keeps its row and unit until deleted), because only the
--     statement-level triggers of section 2 move the stock, by exactly the
--     number of claim rows each statement inserted or deleted.
CREATE TABLE coupons (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text        NOT NULL,
    amount           integer     NOT NULL,
    remaining_amount integer     NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- The claim window (either end may be open) and the pause switch.
    starts_at        timestamptz,
    ends_at          timestamptz,
    active           boolean     NOT NULL DEFAULT true,
    -- Claims made while this is set are holds that expire this many seconds later.
    hold_seconds     integer,
    -- A lower bound of the earliest expires_at among the coupon's unredeemed
    -- holds (NULL: none): inserts and expires_at updates lower it in the
    -- statement triggers, expire_coupon_holds sets it exactly, deletes and
    -- redeems leave it a bound. Whoever holds the row reads it, and reads
    -- claims for due holds only when it is due: no probe of claims on the
    -- claim path otherwise, whatever plan the statistics would give one.
    holds_due_at     timestamptz,
    -- The number and the feed xid of the coupon's last event (events.seq,
    -- events.xid): moved by the same UPDATE of this row that moves the
    -- stock, under its row lock.
    event_seq        bigint      NOT NULL DEFAULT 0,
    event_xid        xid8,
    -- A raffle (0021, section 2): allocation, its draw time, sha256 of its
    -- seed (published from creation), when the draw's last step committed,
    -- and how many entered (moved by the entering batch under the row lock).
    allocation       text        NOT NULL DEFAULT 'first_come',
    draw_at          timestamptz,
    draw_commitment  bytea,
    drawn_at         timestamptz,
    draw_entries     integer     NOT NULL DEFAULT 0,
    CONSTRAINT coupons_name_key UNIQUE (name),
    -- Target of the claims foreign key, which carries the name along.
    CONSTRAINT coupons_id_name_key UNIQUE (id, name),
    CONSTRAINT coupons_name_format CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
    -- The column's own limit: a shop that means "unlimited" sends 2^31 - 1.
    CONSTRAINT coupons_amount_positive CHECK (amount BETWEEN 1 AND 2147483647),
    CONSTRAINT coupons_remaining_not_negative CHECK (remaining_amount >= 0),
    CONSTRAINT coupons_remaining_within_amount CHECK (remaining_amount <= amount),
    CONSTRAINT coupons_window_order CHECK (ends_at > starts_at),
    CONSTRAINT coupons_hold_seconds_range CHECK (hold_seconds BETWEEN 10 AND 86400),
    CONSTRAINT coupons_allocation_known CHECK (allocation IN ('first_come', 'raffle')),
    CONSTRAINT coupons_raffle_draw_at CHECK ((allocation = 'raffle') = (draw_at IS NOT NULL)),
    -- NULL (an open end) passes: after starts_at when set, before ends_at when set.
    CONSTRAINT coupons_draw_in_window CHECK (draw_at > starts_at AND draw_at < ends_at)
);

-- Room on each page for the next version of its coupons' rows: every claim
-- batch updates its coupons' rows (stock, event_seq), and an update stays
-- heap-only (HOT: no index entry, the old version pruned in place) only if
-- the new version fits on the same page. Packed full (the default 100), a
-- table of many coupons sold at once turns nearly every update into a
-- non-HOT one (measured: 7 of 1,658 updates HOT over 1,000 coupons), so
-- every index grows and each lock and read walks dead versions. Rows
-- written from now on get the room; existing ones after a table rewrite.
ALTER TABLE coupons SET (fillfactor = 50);

-- No index on coupons.holds_due_at: an indexed column that changes makes
-- the update non-HOT (PostgreSQL's heap-only tuples need every indexed column
-- unchanged), and the hot coupon's row is updated by every claim batch; the
-- sweeper reads the coupons table whole instead (one row per coupon).

-- Why a claim at p_at is refused, whoever asks: NULL when the sale is open.
-- ended wins over paused, paused over not started (the coupon's status order).
CREATE FUNCTION sale_refusal(p_starts timestamptz, p_ends timestamptz, p_active boolean,
                             p_at timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
               WHEN p_ends <= p_at THEN 'sale_ended'
               WHEN NOT p_active THEN 'paused'
               WHEN p_starts > p_at THEN 'not_started'
           END
$$;

-- The status a client sees: scheduled, active, paused, sold_out or ended.
CREATE FUNCTION coupon_status(p_starts timestamptz, p_ends timestamptz, p_active boolean,
                              p_remaining integer, p_at timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE sale_refusal(p_starts, p_ends, p_active, p_at)
               WHEN 'sale_ended' THEN 'ended'
               WHEN 'paused' THEN 'paused'
               WHEN 'not_started' THEN 'scheduled'
               ELSE CASE WHEN p_remaining = 0 THEN 'sold_out' ELSE 'active' END
           END
$$;

-- change_coupon (PATCH /api/coupons/{name}): changes one coupon.
-- In:  p_name; p_amount, the new total (NULL keeps it); p_active (NULL keeps
--      it); for each of starts_at, ends_at and hold_seconds, whether to set
--      it and the value (NULL clears it).
-- Out: 'ok', 'coupon_not_found', 'ends_in_past', 'amount_below_claimed' or
--      'raffle_drawing' (an amount change while a draw is placed: 0021).
-- Locks: the coupon's row; a cut below the live claims first deletes the
--      coupon's due holds (they are not live claims). remaining_amount moves
--      by the amount's difference, and the CHECKs guard the rest.
-- Triggers: coupons_record_change (a coupon_changed event), and
--      claims_return_stock for the due holds deleted.
CREATE FUNCTION change_coupon(p_name text, p_amount integer,
                              p_set_starts boolean, p_starts timestamptz,
                              p_set_ends boolean, p_ends timestamptz,
                              p_active boolean,
                              p_set_hold boolean, p_hold integer)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_live integer;
BEGIN
    SELECT c.id, c.amount - c.remaining_amount INTO v_id, v_live
      FROM coupons AS c WHERE c.name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'coupon_not_found';
    END IF;
    IF p_set_ends AND p_ends <= clock_timestamp() THEN
        RETURN 'ends_in_past';
    END IF;
    -- A draw being placed counts on the stock it froze for its winners (0021).
    IF p_amount IS NOT NULL AND EXISTS (SELECT 1 FROM raffle_draws AS d
                                         WHERE d.coupon_id = v_id AND d.finished_at IS NULL) THEN
        RETURN 'raffle_drawing';
    END IF;
    IF p_amount < v_live THEN
        v_live := v_live - expire_coupon_holds(v_id, clock_timestamp());
        IF p_amount < v_live THEN
            RETURN 'amount_below_claimed';
        END IF;
    END IF;
    UPDATE coupons AS c
       SET amount = coalesce(p_amount, c.amount),
           remaining_amount = c.remaining_amount + coalesce(p_amount, c.amount) - c.amount,
           starts_at = CASE WHEN p_set_starts THEN p_starts ELSE c.starts_at END,
           ends_at = CASE WHEN p_set_ends THEN p_ends ELSE c.ends_at END,
           active = coalesce(p_active, c.active),
           hold_seconds = CASE WHEN p_set_hold THEN p_hold ELSE c.hold_seconds END
     WHERE c.id = v_id;
    PERFORM raffle_promote(v_id, clock_timestamp());  -- a restock's units (0021)
    RETURN 'ok';
END
$$;

-- =========================================================================
-- 1b. Raffles (migrations/0021_raffles.sql; the public rule: src/flashsale/draw_rule.py)
-- =========================================================================
--
-- A raffle's entries come through the claim path (claim_many), its draw
-- through raffle_start_draws and raffle_draw_step (service/draws.py), its
-- returned units through raffle_promote.

-- The seed, read only by the entering batches (tickets) and the draw; the
-- API shows it once drawn_at is set. inner_key and outer_key are RFC 2104's
-- padded keys (the seed zero-padded to SHA-256's 64-byte block, xor 0x36
-- and 0x5c), computed once so a ticket is two sha256() calls.
CREATE TABLE raffle_seeds (
    coupon_id bigint PRIMARY KEY,  -- no foreign key: coupons_forget_raffles says why
    seed      bytea  NOT NULL,
    inner_key bytea  NOT NULL,
    outer_key bytea  NOT NULL,
    CONSTRAINT raffle_seeds_seed_length CHECK (octet_length(seed) = 32)
);

-- One entry per user per coupon (the primary key: entering again changes
-- nothing). ticket is computed when entering (the seed is fixed from
-- creation), so the draw only walks raffle_entries_order_idx. An entry is
-- never updated: its place is derived (raffle_place, 0023).
CREATE TABLE raffle_entries (
    coupon_id  bigint      NOT NULL,
    user_id    text        NOT NULL,
    entrant    bytea       NOT NULL,
    ticket     bytea       NOT NULL,
    entered_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT raffle_entries_pkey PRIMARY KEY (coupon_id, user_id)
) WITH (fillfactor = 100);

-- The draw order (ties, never seen, broken by the entrant: draw_rule's total order).
CREATE INDEX raffle_entries_order_idx ON raffle_entries (coupon_id, ticket, entrant);
-- Entries before the draw, paged by entrant.
CREATE INDEX raffle_entries_entrant_idx ON raffle_entries (coupon_id, entrant);

-- The drawer's tick (raffle_start_draws: every worker, twice a second)
-- finds the due raffles here instead of reading every coupon. Updates of a
-- coupon stay heap-only (HOT): no column a claim batch changes is indexed
-- or in the predicate (only the draw's last step sets drawn_at, once).
CREATE INDEX coupons_draws_due_idx ON coupons (draw_at)
    WHERE allocation = 'raffle' AND drawn_at IS NULL;

-- A draw's progress: one row per coupon, inserted by the freeze (its
-- primary key makes the draw start once, whatever the instances), moved by
-- each step under the coupon's row lock. Places 1..placed are assigned, the
-- last one at (last_ticket, last_entrant); places winners+1 ..
-- winners+promoted were handed a returned unit, the last at
-- (promote_ticket, promote_entrant). '\x' sorts before every ticket.
CREATE TABLE raffle_draws (
    coupon_id       bigint      PRIMARY KEY,
    entries         integer     NOT NULL,
    winners         integer     NOT NULL,
    placed          integer     NOT NULL DEFAULT 0,
    last_ticket     bytea       NOT NULL DEFAULT '\x',
    last_entrant    bytea       NOT NULL DEFAULT '\x',
    promoted        integer     NOT NULL DEFAULT 0,
    promote_ticket  bytea       NOT NULL DEFAULT '\x',
    promote_entrant bytea       NOT NULL DEFAULT '\x',
    started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at     timestamptz,
    CONSTRAINT raffle_draws_counts CHECK (
        winners BETWEEN 0 AND entries AND placed BETWEEN 0 AND entries
        AND promoted BETWEEN 0 AND entries - winners)
);

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

-- A coupon's raffle rows go with it. No foreign keys to coupons: an
-- operator empties the service's tables with TRUNCATE coupons, claims (and
-- the service then sells again: tests/integration/test_coupon_link.py),
-- which a referencing table would refuse; these triggers clear the raffle
-- tables instead, so a coupon created after RESTART IDENTITY never meets
-- an earlier coupon's entries.
CREATE FUNCTION coupons_forget_raffles() RETURNS trigger
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

CREATE TRIGGER coupons_forget_raffles
    AFTER DELETE ON coupons
    REFERENCING OLD TABLE AS old_coupons
    FOR EACH STATEMENT EXECUTE FUNCTION coupons_forget_raffles();

CREATE TRIGGER coupons_forget_raffles_truncated
    AFTER TRUNCATE ON coupons
    FOR EACH STATEMENT EXECUTE FUNCTION coupons_forget_raffles();

-- RFC 2104's padded key: p_seed zero-padded to 64 bytes, each byte xor p_pad.
CREATE FUNCTION raffle_pad(p_seed bytea, p_pad integer)
RETURNS bytea
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_key bytea := p_seed || decode(repeat('00', 64 - octet_length(p_seed)), 'hex');
BEGIN
    FOR i IN 0 .. 63 LOOP
        v_key := set_byte(v_key, i, get_byte(v_key, i) # p_pad);
    END LOOP;
    RETURN v_key;
END
$$;

-- HMAC-SHA256 from the padded keys (no pgcrypto on the embedded PostgreSQL):
-- sha256(outer || sha256(inner || message)).
CREATE FUNCTION raffle_ticket(p_inner bytea, p_outer bytea, p_entrant bytea)
RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT sha256(p_outer || sha256(p_inner || p_entrant))
$$;

-- A raffle's seed stored with its padded keys (creation, or a PATCH to
-- raffle); an existing seed is kept, so the commitment never changes.
CREATE FUNCTION raffle_keep_seed(p_coupon_id bigint, p_seed bytea)
RETURNS bytea
LANGUAGE plpgsql AS $$
BEGIN
    IF p_seed IS NOT NULL THEN  -- NULL: a change that keeps the raffle's seed
        INSERT INTO raffle_seeds (coupon_id, seed, inner_key, outer_key)
        VALUES (p_coupon_id, p_seed, raffle_pad(p_seed, 54), raffle_pad(p_seed, 92))
        ON CONFLICT (coupon_id) DO NOTHING;
    END IF;
    RETURN (SELECT sha256(s.seed) FROM raffle_seeds AS s WHERE s.coupon_id = p_coupon_id);
END
$$;

-- Users still waiting after a coupon's draw (NULL: not drawn yet).
CREATE FUNCTION raffle_waiting(p_coupon_id bigint)
RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT d.entries - d.winners - d.promoted
      FROM raffle_draws AS d
     WHERE d.coupon_id = p_coupon_id AND d.finished_at IS NOT NULL
$$;

-- Why a raffle refuses a claim at p_at once the sale is open (NULL: it does
-- not; 'entered' is no refusal but the entry's outcome): entries_closed from
-- draw_at until the draw is done, raffle_drawn while users wait.
CREATE FUNCTION raffle_refusal(p_coupon_id bigint, p_draw_at timestamptz,
                               p_drawn_at timestamptz, p_at timestamptz)
RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
               WHEN p_draw_at IS NULL THEN NULL
               WHEN p_drawn_at IS NULL AND p_at < p_draw_at THEN 'entered'
               WHEN p_drawn_at IS NULL THEN 'entries_closed'
               WHEN raffle_waiting(p_coupon_id) > 0 THEN 'raffle_drawn'
           END
$$;

-- The entries of a batch: each user not entered yet gets a row with its
-- digest and ticket. Returns how many entered now (repeats change nothing).
-- Runs under the coupon's row lock (claim_many), which also moves the count.
CREATE FUNCTION raffle_enter(p_coupon_id bigint, p_users text[], p_at timestamptz)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_count integer;
BEGIN
    INSERT INTO raffle_entries (coupon_id, user_id, entrant, ticket, entered_at)
    SELECT p_coupon_id, u.user_id, u.entrant, raffle_ticket(s.inner_key, s.outer_key, u.entrant),
           p_at
      FROM raffle_seeds AS s,
           LATERAL (SELECT x.user_id, sha256(convert_to(x.user_id, 'UTF8')) AS entrant, x.ord
                      FROM unnest(p_users) WITH ORDINALITY AS x(user_id, ord)) AS u
     WHERE s.coupon_id = p_coupon_id
     ORDER BY u.ord
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count > 0 THEN
        UPDATE coupons AS c SET draw_entries = c.draw_entries + v_count WHERE c.id = p_coupon_id;
    END IF;
    RETURN v_count;
END
$$;

-- Events of a raffle's outcome (waitlisted, raffle_drawn), numbered as the
-- claim triggers number theirs: the coupon's event_seq moved under its row
-- lock (the caller holds it), one row per user (p_users NULL: one event
-- naming nobody), p_data parallel.
CREATE FUNCTION raffle_record(p_coupon_id bigint, p_name text, p_type text, p_users text[],
                              p_data jsonb[], p_at timestamptz)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_count integer := cardinality(p_data);
    v_base bigint;
    v_xid xid8;
BEGIN
    UPDATE coupons AS c
       SET event_seq = c.event_seq + v_count,
           event_xid = greatest(c.event_xid, pg_current_xact_id())
     WHERE c.id = p_coupon_id
    RETURNING c.event_seq - v_count, c.event_xid INTO v_base, v_xid;
    -- unnest side by side, never p_users[i]: subscripting an array of
    -- variable-length elements walks it from the start (quadratic).
    INSERT INTO events (xid, coupon_id, coupon_name, seq, type, user_id, at, data)
    SELECT v_xid, p_coupon_id, p_name, v_base + u.ord, p_type, u.user_id, p_at, u.data
      FROM unnest(coalesce(p_users, array_fill(NULL::text, ARRAY[v_count])), p_data)
           WITH ORDINALITY AS u(user_id, data, ord);
END
$$;

-- raffle_promote: units free after a draw go down the waitlist, in place
-- order: a claim each (a hold when the coupon has holds), event data.reason
-- 'waitlist_promoted'. Called wherever units come back, in that
-- transaction, under the coupon's row lock: claim_many (releases, due
-- holds), expire_holds (the sweep), change_coupon (a restock, a resume) and
-- the draw's last step. Not while paused (a resume promotes), nor from
-- ends_at on. Out: how many were promoted.
CREATE FUNCTION raffle_promote(p_coupon_id bigint, p_at timestamptz)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    c coupons%ROWTYPE;
    d raffle_draws%ROWTYPE;
    v_users text[];
    v_tickets bytea[];
    v_entrants bytea[];
    v_count integer;
BEGIN
    SELECT * INTO c FROM coupons AS k WHERE k.id = p_coupon_id;
    IF c.drawn_at IS NULL OR c.remaining_amount = 0 OR NOT c.active
       OR c.ends_at <= p_at THEN
        RETURN 0;
    END IF;
    SELECT * INTO d FROM raffle_draws AS r WHERE r.coupon_id = p_coupon_id;
    v_count := least(c.remaining_amount, d.entries - d.winners - d.promoted);
    IF v_count <= 0 THEN
        RETURN 0;
    END IF;
    SELECT array_agg(e.user_id ORDER BY e.ticket, e.entrant),
           array_agg(e.ticket ORDER BY e.ticket, e.entrant),
           array_agg(e.entrant ORDER BY e.ticket, e.entrant)
      INTO v_users, v_tickets, v_entrants
      FROM (SELECT x.user_id, x.ticket, x.entrant FROM raffle_entries AS x
             WHERE x.coupon_id = p_coupon_id
               AND (x.ticket, x.entrant) > (d.promote_ticket, d.promote_entrant)
             ORDER BY x.ticket, x.entrant
             LIMIT v_count) AS e;
    v_count := coalesce(cardinality(v_users), 0);
    IF v_count = 0 THEN
        RETURN 0;
    END IF;
    PERFORM raffle_grant(c, v_users, 'waitlist_promoted', p_at);
    UPDATE raffle_draws AS r
       SET promoted = r.promoted + v_count, promote_ticket = v_tickets[v_count],
           promote_entrant = v_entrants[v_count]
     WHERE r.coupon_id = p_coupon_id;
    RETURN v_count;
END
$$;

-- Claims for p_users (in order) granted by the raffle, a hold each when the
-- coupon has holds; their claimed events say p_reason (claims_take_stock).
CREATE FUNCTION raffle_grant(c coupons, p_users text[], p_reason text, p_at timestamptz)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('flashsale.claim_reason', p_reason, true);
    INSERT INTO claims (coupon_id, coupon_name, user_id, claimed_at, expires_at)
    SELECT c.id, c.name, u.user_id, p_at, p_at + make_interval(secs => c.hold_seconds)
      FROM unnest(p_users) WITH ORDINALITY AS u(user_id, ord)
     ORDER BY u.ord
    ON CONFLICT DO NOTHING;
    PERFORM set_config('flashsale.claim_reason', '', true);
END
$$;

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
CREATE FUNCTION raffle_start_draws(p_limit integer)
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
CREATE FUNCTION raffle_draw_step(p_coupon_id bigint, p_chunk integer)
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

-- The draw's last step (raffle_draw_step): the draw published and units
-- returned meanwhile handed down the waitlist.
CREATE FUNCTION raffle_finish(c coupons, d raffle_draws, p_at timestamptz)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE raffle_draws AS r SET finished_at = p_at WHERE r.coupon_id = c.id;
    UPDATE coupons AS k SET drawn_at = p_at WHERE k.id = c.id;
    PERFORM raffle_record(c.id, c.name, 'raffle_drawn', NULL,
                          ARRAY[jsonb_build_object(
                              'entries', d.entries, 'winners', d.winners,
                              'seed', (SELECT encode(s.seed, 'hex') FROM raffle_seeds AS s
                                        WHERE s.coupon_id = c.id))],
                          p_at);
    PERFORM raffle_promote(c.id, p_at);
END
$$;

-- change_raffle (PATCH allocation and draw_at): refused once anyone entered
-- (raffle_entries_exist), or for a first-come coupon with claims; a raffle's
-- seed is kept (p_seed is used only when it has none). Runs before
-- change_coupon in the same transaction, under the coupon's row lock.
-- Out: 'ok', 'coupon_not_found', 'raffle_entries_exist', 'draw_in_past' or
-- 'draw_without_raffle' (a window CHECK failure raises: coupons_raffle_draw_at,
-- coupons_draw_in_window).
CREATE FUNCTION change_raffle(p_name text, p_allocation text, p_set_draw boolean,
                              p_draw_at timestamptz, p_seed bytea)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    c coupons%ROWTYPE;
    v_allocation text;
BEGIN
    SELECT * INTO c FROM coupons AS k WHERE k.name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'coupon_not_found';
    END IF;
    IF c.draw_entries > 0 OR c.amount <> c.remaining_amount
       OR EXISTS (SELECT 1 FROM raffle_draws AS d WHERE d.coupon_id = c.id) THEN
        RETURN 'raffle_entries_exist';
    END IF;
    IF p_set_draw AND p_draw_at <= clock_timestamp() THEN
        RETURN 'draw_in_past';
    END IF;
    v_allocation := coalesce(p_allocation, c.allocation);
    IF p_set_draw AND v_allocation = 'first_come' THEN
        RETURN 'draw_without_raffle';
    END IF;
    UPDATE coupons AS k
       SET allocation = v_allocation,
           draw_at = CASE WHEN v_allocation = 'first_come' THEN NULL
                          WHEN p_set_draw THEN p_draw_at ELSE k.draw_at END,
           draw_commitment = CASE WHEN v_allocation = 'raffle'
                                  THEN raffle_keep_seed(k.id, p_seed) END
     WHERE k.id = c.id;
    RETURN 'ok';
END
$$;

-- What a raffle's status shows beside coupon_status's: ended, paused and
-- scheduled keep their precedence; then entries_open before draw_at,
-- drawing until the draw's last step, drawn after it.
CREATE FUNCTION raffle_status(p_status text, p_draw_at timestamptz, p_drawn_at timestamptz,
                              p_at timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
               WHEN p_draw_at IS NULL OR p_status IN ('ended', 'paused', 'scheduled') THEN p_status
               WHEN p_drawn_at IS NOT NULL THEN 'drawn'
               WHEN p_draw_at <= p_at THEN 'drawing'
               ELSE 'entries_open'
           END
$$;

-- =========================================================================
-- 2. Claims and stock
-- =========================================================================
--
-- A claim is a row of claims; the stock counter follows the table, whatever
-- writes it.

CREATE TABLE claims (
    -- Claim order: identities are handed out in insertion order.
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    coupon_id   bigint      NOT NULL,
    coupon_name text        NOT NULL,
    user_id     text        NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    -- A hold's end (NULL: the claim never expires); past it, unless redeemed,
    -- the claim is not live, and the sweeper or the claim path deletes it.
    expires_at  timestamptz,
    redeemed_at timestamptz,
    CONSTRAINT claims_pkey PRIMARY KEY (coupon_id, user_id),
    -- The original design keys claims by coupon name; we keep the name and
    -- tie it to the coupon's identity so the two can never disagree: a
    -- coupon's delete takes its claims, its rename renames them (0016).
    CONSTRAINT claims_coupon_fkey FOREIGN KEY (coupon_id, coupon_name)
        REFERENCES coupons (id, name) ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT claims_user_id_format CHECK (
        char_length(user_id) BETWEEN 1 AND 128 AND user_id !~ '[[:cntrl:]]'
    )
);

-- Claimers of one coupon in claim order, without a sort.
CREATE UNIQUE INDEX claims_coupon_order_idx ON claims (coupon_id, id);

-- One coupon's unredeemed holds, soonest expiry first: the due-hold deletes
-- and the recomputation of coupons.holds_due_at (one index entry per hold).
CREATE INDEX claims_coupon_holds_idx ON claims (coupon_id, expires_at)
    WHERE redeemed_at IS NULL AND expires_at IS NOT NULL;

-- How many claims of a coupon are redeemed, without visiting the others.
CREATE INDEX claims_coupon_redeemed_idx ON claims (coupon_id)
    WHERE redeemed_at IS NOT NULL;

-- A user's claims across coupons, newest first (keyset on the claim id).
CREATE INDEX claims_user_order_idx ON claims (user_id, id);

-- Every claim that ended without being a live claim any more: who, when,
-- why. Written by the claims_return_stock trigger, so an operator's DELETE
-- is recorded too (reason 'deleted'); the service's statements say
-- 'released' or 'expired' through the transaction-local setting
-- flashsale.end_reason. No foreign key: history outlives its coupon.
CREATE TABLE claim_history (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    claim_id    bigint      NOT NULL,
    coupon_id   bigint      NOT NULL,
    coupon_name text        NOT NULL,
    user_id     text        NOT NULL,
    claimed_at  timestamptz NOT NULL,
    expires_at  timestamptz,
    redeemed_at timestamptz,
    ended_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    reason      text        NOT NULL,
    CONSTRAINT claim_history_reason CHECK (reason IN ('released', 'expired', 'deleted')),
    -- A claim ends once: two sweepers can never both return its unit.
    CONSTRAINT claim_history_claim_key UNIQUE (claim_id)
);

CREATE INDEX claim_history_coupon_idx ON claim_history (coupon_id, id);

-- The stock counter follows the claims table, whoever writes it (the claim
-- engine, an operator fixing data by hand, a cascade from a deleted coupon).
-- Statement-level triggers with transition tables cost one UPDATE per
-- statement, so a batch of 500 claims moves the counter once. If a writer
-- inserts more claims than there is stock, coupons_remaining_not_negative
-- fails the whole statement: an oversell becomes an error, never a row.
CREATE FUNCTION claims_take_stock() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    -- Why the raffle granted these claims (raffle_draw_step, raffle_promote),
    -- read once per statement; NULL for the claim path's claims.
    v_reason text := nullif(current_setting('flashsale.claim_reason', true), '');
BEGIN
    WITH n AS (
        SELECT coupon_id, count(*) AS taken, min(expires_at) AS first_expiry
          FROM new_claims GROUP BY coupon_id
    ), moved AS (
        UPDATE coupons AS c
           SET remaining_amount = c.remaining_amount - n.taken,
               holds_due_at = least(c.holds_due_at, n.first_expiry),
               event_seq = c.event_seq + n.taken,
               event_xid = greatest(c.event_xid, pg_current_xact_id())
          FROM n
         WHERE c.id = n.coupon_id
           -- The same rows by their primary key: the planner takes a
           -- transition table for as many coupons as it has rows, and
           -- joined it to a sequential scan of every coupon once a batch
           -- held a few dozen claims (0024); an array is looked up by index.
           AND c.id = ANY (ARRAY(SELECT n.coupon_id FROM n))
        RETURNING c.id, c.event_seq - n.taken AS base, c.event_xid AS xid
    )
    INSERT INTO events (xid, coupon_id, coupon_name, seq, type, user_id, at, data)
    SELECT m.xid, k.coupon_id, k.coupon_name,
           m.base + row_number() OVER (PARTITION BY k.coupon_id ORDER BY k.id),
           'claimed', k.user_id, k.claimed_at,
           CASE WHEN v_reason IS NULL THEN '{}'::jsonb
                ELSE jsonb_build_object('reason', v_reason) END
      FROM new_claims AS k
      JOIN moved AS m ON m.id = k.coupon_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION claims_return_stock() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_reason text := coalesce(nullif(current_setting('flashsale.end_reason', true), ''),
                              'deleted');
    -- Who released which user's hold (claim_many's p_release_actors), read
    -- once per statement; NULL for other deletes (expiry, an operator's SQL).
    v_actors jsonb := nullif(current_setting('flashsale.release_actors', true), '')::jsonb;
BEGIN
    WITH o AS (
        SELECT coupon_id, count(*) AS returned FROM old_claims GROUP BY coupon_id
    ), moved AS (
        UPDATE coupons AS c
           SET remaining_amount = c.remaining_amount + o.returned,
               event_seq = c.event_seq + o.returned,
               event_xid = greatest(c.event_xid, pg_current_xact_id())
          FROM o
         WHERE c.id = o.coupon_id
           AND c.id = ANY (ARRAY(SELECT o.coupon_id FROM o))  -- by index: claims_take_stock
        RETURNING c.id, c.event_seq - o.returned AS base, c.event_xid AS xid
    )
    INSERT INTO events (xid, coupon_id, coupon_name, seq, type, user_id, at, data)
    SELECT m.xid, k.coupon_id, k.coupon_name,
           m.base + row_number() OVER (PARTITION BY k.coupon_id ORDER BY k.id),
           CASE WHEN v_reason = 'expired' THEN 'expired' ELSE 'released' END,
           k.user_id, clock_timestamp(),
           CASE WHEN v_reason = 'expired' THEN '{}'::jsonb
                WHEN v_actors ? k.user_id
                THEN jsonb_build_object('reason', v_reason, 'actor', v_actors -> k.user_id)
                ELSE jsonb_build_object('reason', v_reason) END
      FROM old_claims AS k
      JOIN moved AS m ON m.id = k.coupon_id;
    INSERT INTO claim_history (claim_id, coupon_id, coupon_name, user_id, claimed_at,
                               expires_at, redeemed_at, reason)
    SELECT o.id, o.coupon_id, o.coupon_name, o.user_id, o.claimed_at, o.expires_at,
           o.redeemed_at, v_reason
      FROM old_claims AS o;
    RETURN NULL;
END
$$;

CREATE TRIGGER claims_take_stock
    AFTER INSERT ON claims
    REFERENCING NEW TABLE AS new_claims
    FOR EACH STATEMENT EXECUTE FUNCTION claims_take_stock();

CREATE TRIGGER claims_return_stock
    AFTER DELETE ON claims
    REFERENCING OLD TABLE AS old_claims
    FOR EACH STATEMENT EXECUTE FUNCTION claims_return_stock();

-- An operator's UPDATE claims SET expires_at = ... (the bench does it) can
-- bring a hold's end forward: the bound follows.
CREATE FUNCTION claims_follow_expiry() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE coupons AS c
       SET holds_due_at = least(c.holds_due_at, n.first_expiry)
      FROM (SELECT coupon_id, min(expires_at) AS first_expiry
              FROM new_claims WHERE redeemed_at IS NULL
             GROUP BY coupon_id) AS n
     WHERE c.id = n.coupon_id AND n.first_expiry IS NOT NULL
       AND (c.holds_due_at IS NULL OR n.first_expiry < c.holds_due_at);
    RETURN NULL;
END
$$;

CREATE TRIGGER claims_follow_expiry
    AFTER UPDATE ON claims
    REFERENCING NEW TABLE AS new_claims
    FOR EACH STATEMENT EXECUTE FUNCTION claims_follow_expiry();

-- redeem_claim (POST .../redeem): the live hold becomes redeemed (it never
-- expires then).
-- In:  p_name, p_user. Out: 'ok', 'coupon_not_found', 'claim_not_found' or
--      'already_redeemed'.
-- Locks: the coupon's row, then the claim's. An UPDATE that waited for a
--      sweeper or a release finds the row gone and redeems nothing: exactly
--      one of them wins.
-- Triggers: claims_record_redeems (a redeemed event), claims_follow_expiry.
CREATE FUNCTION redeem_claim(p_name text, p_user text)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    SELECT c.id INTO v_id FROM coupons AS c WHERE c.name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'coupon_not_found';
    END IF;
    UPDATE claims AS h SET redeemed_at = clock_timestamp()
     WHERE h.coupon_id = v_id AND h.user_id = p_user AND h.redeemed_at IS NULL
       AND (h.expires_at IS NULL OR h.expires_at > clock_timestamp());
    IF FOUND THEN
        RETURN 'ok';
    END IF;
    PERFORM 1 FROM claims AS h
     WHERE h.coupon_id = v_id AND h.user_id = p_user AND h.redeemed_at IS NOT NULL;
    RETURN CASE WHEN FOUND THEN 'already_redeemed' ELSE 'claim_not_found' END;
END
$$;

-- A claim tied to its coupon -----------------------------------------------

-- Moving a claim to another coupon or user would dodge the stock triggers.
-- A claim's coupon_name follows its coupon's through claims_coupon_fkey's
-- ON UPDATE CASCADE, which sets both key columns (coupon_id to its old
-- value): compared by value, only a real move is refused. The constraint
-- itself refuses a coupon_name that is not its coupon's.
CREATE FUNCTION claims_forbid_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.coupon_id <> OLD.coupon_id OR NEW.user_id <> OLD.user_id THEN
        RAISE EXCEPTION 'claims are immutable: delete and insert instead'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER claims_forbid_update
    BEFORE UPDATE OF coupon_id, user_id ON claims
    FOR EACH ROW EXECUTE FUNCTION claims_forbid_update();

-- The original design's row shape stays writable: an operator's
-- INSERT INTO claims (user_id, coupon_name) finds the coupon by name, gets
-- the coupon's hold like an API claim, and takes a unit through
-- claims_take_stock. WHEN keeps the trigger off the claim path's inserts.
CREATE FUNCTION claims_fill_coupon() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_hold integer;
BEGIN
    SELECT c.id, c.hold_seconds INTO NEW.coupon_id, v_hold
      FROM coupons AS c WHERE c.name = NEW.coupon_name;
    IF NEW.coupon_id IS NULL THEN
        RAISE EXCEPTION 'no coupon named %', NEW.coupon_name
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF NEW.expires_at IS NULL AND v_hold IS NOT NULL THEN
        NEW.expires_at := NEW.claimed_at + make_interval(secs => v_hold);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER claims_fill_coupon
    BEFORE INSERT ON claims
    FOR EACH ROW WHEN (NEW.coupon_id IS NULL) EXECUTE FUNCTION claims_fill_coupon();

-- =========================================================================
-- 3. Idempotency keys
-- =========================================================================
--
-- Before the claim functions: the keyed ones declare variables of its row
-- type, which PostgreSQL resolves when it creates them.

-- A keyed request's answer, written in the transaction of its effect (see
-- migrations/0011_idempotency.sql for the two shapes of answer and the scope).
-- key is a digest of its owner, ':', then the client's key (0019): a key is
-- unique per route and owner.
CREATE TABLE idempotency_keys (
    scope       text        NOT NULL,
    key         text        NOT NULL,
    fingerprint bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    status      smallint,
    body        bytea,
    outcome     text,
    claimed_at  timestamptz,
    expires_at  timestamptz,
    PRIMARY KEY (scope, key),
    CONSTRAINT idempotency_keys_key_length CHECK (octet_length(key) BETWEEN 1 AND 288)
);

-- The purge walks the oldest keys first, a small batch at a time.
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- Takes key p_key of p_scope for this transaction, or returns what an
-- earlier request stored under it. The INSERT's unique check waits while
-- another transaction has inserted the same key and not yet finished
-- (PostgreSQL's speculative insertion waits for the inserting transaction):
-- a concurrent retry so waits for the first attempt's outcome, bounded by
-- lock_timeout. If that attempt commits, ON CONFLICT DO NOTHING inserts
-- nothing and the SELECT, a later statement with a fresh snapshot in READ
-- COMMITTED, sees its committed row; if it rolls back, this INSERT goes
-- through and the retry runs. fresh is true when the key was taken.
CREATE FUNCTION take_idempotency_key(p_scope text, p_key text, p_fingerprint bytea)
RETURNS TABLE (fresh boolean, fingerprint bytea, status smallint, body bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    INSERT INTO idempotency_keys (scope, key, fingerprint)
    VALUES (p_scope, p_key, p_fingerprint)
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        RETURN QUERY SELECT true, NULL::bytea, NULL::smallint, NULL::bytea;
        RETURN;
    END IF;
    RETURN QUERY
        SELECT false, k.fingerprint, k.status, k.body
          FROM idempotency_keys AS k
         WHERE k.scope = p_scope AND k.key = p_key;
END
$$;

-- The rows of p_scope stored under p_keys (NULLs ignored), an index probe
-- per key of idempotency_keys_pkey. Written as a lateral lookup by the whole
-- primary key, not as "scope = $1 AND key = ANY ($2)": PostgreSQL costs an
-- array of N keys as N index descents, so with statistics from when the
-- table was small (autovacuum analyzes it a minute or more later, and a
-- cached generic plan keeps them) the planner preferred one descent on scope
-- with key = ANY as a filter over every key of the scope. An equality on
-- every column of a unique index is at most one row whatever the statistics
-- say, so each probe stays one descent; LIMIT 1
-- keeps the planner from flattening the lateral subquery into a join it
-- could again plan as a hash join over the scope.
CREATE FUNCTION stored_keys(p_scope text, p_keys text[])
RETURNS idempotency_keys[]
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF coalesce(cardinality(array_remove(p_keys, NULL)), 0) = 0 THEN
        RETURN '{}';
    END IF;
    RETURN ARRAY(SELECT k
                   FROM unnest(p_keys) AS u(key),
                        LATERAL (SELECT * FROM idempotency_keys AS i
                                  WHERE i.scope = p_scope AND i.key = u.key
                                  LIMIT 1) AS k);
END
$$;

-- p_users without the arrivals whose key is in p_stored, in order.
CREATE FUNCTION unstored_arrivals(p_users text[], p_keys text[], p_stored idempotency_keys[])
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_stored text[];
BEGIN
    IF cardinality(p_stored) = 0 THEN
        RETURN p_users;
    END IF;
    v_stored := ARRAY(SELECT s.key FROM unnest(p_stored) AS s);
    RETURN ARRAY(SELECT u.user_id
                   FROM unnest(p_users, p_keys) WITH ORDINALITY AS u(user_id, key, ord)
                  WHERE u.key IS NULL OR u.key <> ALL (v_stored)
                  ORDER BY u.ord);
END
$$;

-- coupon_part_decision: claim_many's row for one part of a batch, numbered
-- by part (claim_many_keyed's batch is one part, numbered 1). The keys of a
-- part's arrivals are decided from it (keep_claim_keys, keep_release_keys).
CREATE TYPE coupon_part_decision AS (
    part integer, coupon_id bigint, remaining integer, claimed text[], holders text[],
    refusal text, claimed_at timestamptz, expires_at timestamptz,
    released text[], redeemed text[]
);

-- keep_claim_keys: stores each fresh claim key with its decision.
-- In:  p_scope; p_parts, p_users, p_keys and p_prints, parallel: each
--      arrival's part, user, key (NULL: none) and fingerprint; p_stored, the
--      keys found stored (stored_keys); p_decided, each part's decision.
-- Out: fresh, the keys inserted; each arrival's decision in the order of
--      p_users (NULL where an arrival has no key), read as the store reads
--      claim_many's answer: granted; else a holder (every ungranted user
--      when the stock covered the part: holders is NULL then); else why the
--      sale refused, or sold_out.
-- Locks: the key rows it inserts, in one INSERT in key order.
-- The joins are to the batch's own arrays (hash or nested loop over a few
-- hundred values), never to the table.
CREATE FUNCTION keep_claim_keys(p_scope text, p_parts integer[], p_users text[],
                                p_keys text[], p_prints bytea[],
                                p_stored idempotency_keys[], p_decided coupon_part_decision[])
RETURNS TABLE (fresh bigint, outcomes text[], replayed boolean[],
               claimed_ats timestamptz[], expires_ats timestamptz[])
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH granted AS (
        SELECT d.part, g.user_id FROM unnest(p_decided) AS d, unnest(d.claimed) AS g(user_id)
    ), held AS (
        SELECT d.part, h.user_id FROM unnest(p_decided) AS d, unnest(d.holders) AS h(user_id)
    ), arrival AS (
        SELECT u.ord, u.key, u.print, s.key IS NOT NULL AS replayed,
               CASE WHEN s.key IS NOT NULL AND s.fingerprint <> u.print
                        THEN 'idempotency_key_reused'
                    WHEN s.key IS NOT NULL THEN s.outcome
                    WHEN d.coupon_id IS NULL THEN 'not_found'
                    WHEN g.user_id IS NOT NULL THEN 'claimed'
                    WHEN d.holders IS NULL OR h.user_id IS NOT NULL THEN 'already_claimed'
                    ELSE coalesce(d.refusal, 'sold_out') END AS outcome,
               CASE WHEN s.key IS NOT NULL THEN s.claimed_at
                    WHEN g.user_id IS NOT NULL OR d.refusal = 'entered'
                    THEN d.claimed_at END AS claimed_at,
               CASE WHEN s.key IS NOT NULL THEN s.expires_at
                    WHEN g.user_id IS NOT NULL OR d.refusal = 'entered'
                    THEN d.expires_at END AS expires_at
          FROM unnest(p_parts, p_users, p_keys, p_prints)
               WITH ORDINALITY AS u(part, user_id, key, print, ord)
          JOIN unnest(p_decided) AS d ON d.part = u.part
          LEFT JOIN unnest(p_stored) AS s ON s.key = u.key
          LEFT JOIN granted AS g ON g.part = u.part AND g.user_id = u.user_id
          LEFT JOIN held AS h ON h.part = u.part AND h.user_id = u.user_id
    ), inserted AS (
        INSERT INTO idempotency_keys (scope, key, fingerprint, outcome, claimed_at, expires_at)
        SELECT p_scope, a.key, a.print, a.outcome, a.claimed_at, a.expires_at
          FROM arrival AS a
         WHERE a.key IS NOT NULL AND NOT a.replayed
         ORDER BY a.key
        ON CONFLICT DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM inserted),
           array_agg(CASE WHEN a.key IS NOT NULL THEN a.outcome END ORDER BY a.ord),
           array_agg(a.replayed ORDER BY a.ord),
           array_agg(a.claimed_at ORDER BY a.ord),
           array_agg(a.expires_at ORDER BY a.ord)
      FROM arrival AS a;
END
$$;

-- keep_release_keys: keep_claim_keys for releases (p_releases for p_users):
-- released, already_redeemed, claim_not_found.
CREATE FUNCTION keep_release_keys(p_scope text, p_parts integer[], p_releases text[],
                                  p_keys text[], p_prints bytea[],
                                  p_stored idempotency_keys[], p_decided coupon_part_decision[])
RETURNS TABLE (fresh bigint, outcomes text[], replayed boolean[])
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH released AS (
        SELECT d.part, x.user_id FROM unnest(p_decided) AS d, unnest(d.released) AS x(user_id)
    ), redeemed AS (
        SELECT d.part, x.user_id FROM unnest(p_decided) AS d, unnest(d.redeemed) AS x(user_id)
    ), arrival AS (
        SELECT u.ord, u.key, u.print, s.key IS NOT NULL AS replayed,
               CASE WHEN s.key IS NOT NULL AND s.fingerprint <> u.print
                        THEN 'idempotency_key_reused'
                    WHEN s.key IS NOT NULL THEN s.outcome
                    WHEN d.coupon_id IS NULL THEN 'not_found'
                    WHEN r.user_id IS NOT NULL THEN 'released'
                    WHEN x.user_id IS NOT NULL THEN 'already_redeemed'
                    ELSE 'claim_not_found' END AS outcome
          FROM unnest(p_parts, p_releases, p_keys, p_prints)
               WITH ORDINALITY AS u(part, user_id, key, print, ord)
          JOIN unnest(p_decided) AS d ON d.part = u.part
          LEFT JOIN unnest(p_stored) AS s ON s.key = u.key
          LEFT JOIN released AS r ON r.part = u.part AND r.user_id = u.user_id
          LEFT JOIN redeemed AS x ON x.part = u.part AND x.user_id = u.user_id
    ), inserted AS (
        INSERT INTO idempotency_keys (scope, key, fingerprint, outcome)
        SELECT p_scope, a.key, a.print, a.outcome
          FROM arrival AS a
         WHERE a.key IS NOT NULL AND NOT a.replayed
         ORDER BY a.key
        ON CONFLICT DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM inserted),
           array_agg(CASE WHEN a.key IS NOT NULL THEN a.outcome END ORDER BY a.ord),
           array_agg(a.replayed ORDER BY a.ord)
      FROM arrival AS a;
END
$$;

-- =========================================================================
-- 4. The claim functions
-- =========================================================================
--
-- One batch of a coupon's claims (and the releases that ride with it) is one
-- call of one of these, in one transaction: claim_many without keys,
-- claim_many_new_keys or claim_many_keyed with them (both wrap claim_many, the
-- one decider); sold_out_batch answers lock-free once a coupon sold out.

-- claim_many: decides one batch of a coupon's claims and releases.
-- In:  p_coupon_name; p_users, distinct users claiming, in arrival order;
--      p_releases, users whose live hold goes back; p_release_actors, who
--      released each (a JSON object: user id -> actor, as event_actor_data's;
--      NULL or a user left out: nobody named).
-- Out: one row: coupon_id (NULL: no such coupon); remaining after the batch;
--      claimed, the users granted a claim; holders, the users of p_users who
--      hold the coupon (NULL when the stock covered every user: whoever the
--      primary key refused holds it); refusal (sale_ended, paused,
--      not_started; NULL while the sale is open); claimed_at and expires_at
--      of the granted claims; released (the holds given back) and redeemed
--      (the releases refused because the claim is redeemed).
-- Locks: the coupon's row FOR UPDATE, in a statement of its own (so later
--      statements see every batch it waited for); then the claim rows it
--      deletes (releases, due holds) and inserts.
-- Decides at clock_timestamp() taken after the lock: a batch that waited
--      past ends_at, or behind a pause that committed meanwhile, is refused.
--      Due holds are deleted (expire_coupon_holds) when the batch needs
--      their units or users, or once the first is a second overdue; until
--      then a due hold is not live for any decision here. Releases come
--      before claims, whatever the sale's state: their units go to this
--      batch's claims. A closed sale still reports its holders, so they hear
--      already_claimed.
-- Triggers: claims_return_stock (releases, due holds), claims_take_stock
--      (granted claims).
CREATE FUNCTION claim_many(p_coupon_name text, p_users text[], p_releases text[] DEFAULT '{}',
                           p_release_actors jsonb DEFAULT NULL)
RETURNS TABLE (coupon_id bigint, remaining integer, claimed text[], holders text[],
               refusal text, claimed_at timestamptz, expires_at timestamptz,
               released text[], redeemed text[])
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    c coupons%ROWTYPE;
    v_now timestamptz;
    v_expires timestamptz;
    v_remaining integer;
    v_refusal text;
    v_claimed text[];
    v_holders text[];
    v_released text[] := '{}';
    v_redeemed text[] := '{}';
BEGIN
    SELECT * INTO c FROM coupons AS k WHERE k.name = p_coupon_name FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT NULL::bigint, NULL::integer, NULL::text[], NULL::text[],
                            NULL::text, NULL::timestamptz, NULL::timestamptz,
                            NULL::text[], NULL::text[];
        RETURN;
    END IF;
    v_now := clock_timestamp();
    v_remaining := c.remaining_amount;
    IF c.holds_due_at <= v_now - interval '1 second'
       OR (c.holds_due_at <= v_now AND v_remaining < cardinality(p_users)) THEN
        v_remaining := v_remaining + expire_coupon_holds(c.id, v_now);
        c.holds_due_at := NULL;  -- this row variable only: no hold is due now
    END IF;
    IF cardinality(p_releases) > 0 THEN
        -- Releases first, whatever the sale's state: their units are the
        -- batch's to claim. A due hold is not live: it is the sweep's.
        -- The released events name each release's actor (claims_return_stock
        -- reads the map): one setting for the statement, however many callers.
        PERFORM set_config('flashsale.end_reason', 'released', true),
                set_config('flashsale.release_actors', coalesce(p_release_actors::text, ''), true);
        WITH gone AS (
            DELETE FROM claims AS h
             WHERE h.coupon_id = c.id AND h.user_id = ANY (p_releases)
               AND h.redeemed_at IS NULL AND (h.expires_at IS NULL OR h.expires_at > v_now)
            RETURNING h.user_id
        )
        SELECT coalesce(array_agg(gone.user_id), '{}') INTO v_released FROM gone;
        PERFORM set_config('flashsale.end_reason', '', true),
                set_config('flashsale.release_actors', '', true);
        v_remaining := v_remaining + cardinality(v_released);
        SELECT coalesce(array_agg(h.user_id), '{}') INTO v_redeemed
          FROM claims AS h
         WHERE h.coupon_id = c.id AND h.user_id = ANY (p_releases) AND h.redeemed_at IS NOT NULL;
    END IF;

    v_refusal := sale_refusal(c.starts_at, c.ends_at, c.active, v_now);
    IF c.allocation = 'raffle' AND v_refusal IS NULL THEN
        -- A raffle (0021): units that came back go down the waitlist first;
        -- then before draw_at the batch enters (v_now is after the row lock,
        -- the freeze's clock too: an entry is in the draw or refused), from
        -- draw_at until the draw is done it is refused, and after it while
        -- users wait. An empty waitlist leaves the claims to first come.
        IF c.drawn_at IS NOT NULL AND raffle_promote(c.id, v_now) > 0 THEN
            SELECT k.remaining_amount INTO v_remaining FROM coupons AS k WHERE k.id = c.id;
        END IF;
        v_refusal := raffle_refusal(c.id, c.draw_at, c.drawn_at, v_now);
        IF v_refusal = 'entered' THEN
            -- Every arrival hears 'entered' (a repeat too); expires_at
            -- carries draw_at, the entry's answer.
            PERFORM raffle_enter(c.id, p_users, v_now);
            RETURN QUERY SELECT c.id, v_remaining, '{}'::text[], '{}'::text[], v_refusal,
                                v_now, c.draw_at, v_released, v_redeemed;
            RETURN;
        END IF;
    END IF;
    IF v_refusal IS NOT NULL THEN
        SELECT coalesce(array_agg(h.user_id), '{}') INTO v_holders
          FROM claims AS h
         WHERE h.coupon_id = c.id AND h.user_id = ANY (p_users)
           AND (h.redeemed_at IS NOT NULL OR h.expires_at IS NULL OR h.expires_at > v_now);
        RETURN QUERY SELECT c.id, v_remaining, '{}'::text[], v_holders, v_refusal,
                            NULL::timestamptz, NULL::timestamptz, v_released, v_redeemed;
        RETURN;
    END IF;

    v_expires := v_now + make_interval(secs => c.hold_seconds);
    IF v_remaining >= cardinality(p_users) THEN
        -- Stock for everyone in the batch: the primary key sorts out holders.
        WITH inserted AS (
            INSERT INTO claims (coupon_id, coupon_name, user_id, claimed_at, expires_at)
            SELECT c.id, p_coupon_name, u.user_id, v_now, v_expires
              FROM unnest(p_users) WITH ORDINALITY AS u(user_id, ord)
             ORDER BY u.ord
            ON CONFLICT DO NOTHING
            RETURNING user_id
        )
        SELECT coalesce(array_agg(inserted.user_id), '{}') INTO v_claimed FROM inserted;
        IF c.holds_due_at <= v_now AND cardinality(v_claimed) < cardinality(p_users) THEN
            -- Refused by the primary key: holders, or holders of a due hold,
            -- who may claim again. Sweep, and try those users once more.
            v_remaining := v_remaining + expire_coupon_holds(c.id, v_now);
            WITH inserted AS (
                INSERT INTO claims (coupon_id, coupon_name, user_id, claimed_at, expires_at)
                SELECT c.id, p_coupon_name, u.user_id, v_now, v_expires
                  FROM unnest(p_users) WITH ORDINALITY AS u(user_id, ord)
                 WHERE u.user_id <> ALL (v_claimed)
                 ORDER BY u.ord
                ON CONFLICT DO NOTHING
                RETURNING user_id
            )
            SELECT v_claimed || coalesce(array_agg(inserted.user_id), '{}') INTO v_claimed
              FROM inserted;
        END IF;
    ELSE
        -- Scarce stock: holders must not take a unit from later arrivals.
        SELECT coalesce(array_agg(h.user_id), '{}') INTO v_holders
          FROM claims AS h WHERE h.coupon_id = c.id AND h.user_id = ANY (p_users);
        WITH inserted AS (
            INSERT INTO claims (coupon_id, coupon_name, user_id, claimed_at, expires_at)
            SELECT c.id, p_coupon_name, u.user_id, v_now, v_expires
              FROM unnest(p_users) WITH ORDINALITY AS u(user_id, ord)
             WHERE u.user_id <> ALL (v_holders)
             ORDER BY u.ord
             LIMIT v_remaining
            ON CONFLICT DO NOTHING
            RETURNING user_id
        )
        SELECT coalesce(array_agg(inserted.user_id), '{}') INTO v_claimed FROM inserted;
    END IF;

    RETURN QUERY
        SELECT c.id, v_remaining - cardinality(v_claimed), v_claimed, v_holders, NULL::text,
               v_now, v_expires, v_released, v_redeemed;
END
$$;

-- claim_many_keyed: claim_many for a batch with Idempotency-Keys.
-- In:  claim_many's, then the claims' key scope, keys and fingerprints
--      (p_claim_keys and p_claim_prints parallel to p_users, NULL where an
--      arrival has none) and the releases' (parallel to p_releases); last,
--      claim_many's p_release_actors.
-- Out: claim_many's row, then each keyed arrival's decision as stored with
--      its key (claim_outcomes, claim_replayed, claim_claimed_ats,
--      claim_expires_ats; release_outcomes, release_replayed), NULL where
--      an arrival has no key. A key's decision is its user's: the engine
--      sends a keyed user once per batch.
-- Locks: the coupon's row first, then claim_many's (the same row again, then
--      claims), then the key rows it inserts, in key order (so two batches
--      never deadlock on keys).
-- Raises FSK01 (the batch rolls back whole) when a request for another
--      coupon committed one of these keys meanwhile; the store sends the
--      batch again, and step 2 then finds the key (a 422 for that arrival).
-- Triggers: claim_many's.
-- A wrapper, so that claim_many stays the one decider and batches without
-- keys pay nothing for keys. Step by step:
-- 1. The coupon's row lock first: batches of one coupon run in turn, so the
--    keys an earlier batch stored are committed and visible to the read in
--    2 (READ COMMITTED: each statement sees what committed before it began).
--    A retry of a claim still being decided by another worker's batch so
--    waits for that batch, for free, and then replays its outcome.
-- 2. Arrivals whose key is stored (stored_keys: one primary-key probe per
--    key) leave the batch (a replay changes nothing).
-- 3. claim_many decides the rest.
-- 4. One INSERT ... SELECT from unnest per kind (keep_claim_keys,
--    keep_release_keys, skipped for a kind without keys) stores each fresh
--    key with its decision, computed from claim_many's answer and returned
--    as inserted, never read back, in this transaction: a key exists exactly
--    when its decision committed. Only a request for another coupon (so with
--    another fingerprint) can hold one of these keys meanwhile; the INSERT
--    waits for it (the unique index's check waits for the inserting
--    transaction) and raises FSK01 if it committed.
CREATE FUNCTION claim_many_keyed(p_coupon_name text, p_users text[], p_releases text[],
                                 p_claim_scope text, p_claim_keys text[],
                                 p_claim_prints bytea[], p_release_scope text,
                                 p_release_keys text[], p_release_prints bytea[],
                                 p_release_actors jsonb DEFAULT NULL)
RETURNS TABLE (coupon_id bigint, remaining integer, claimed text[], holders text[],
               refusal text, claimed_at timestamptz, expires_at timestamptz,
               released text[], redeemed text[],
               claim_outcomes text[], claim_replayed boolean[],
               claim_claimed_ats timestamptz[], claim_expires_ats timestamptz[],
               release_outcomes text[], release_replayed boolean[])
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_claim_stored idempotency_keys[];
    v_release_stored idempotency_keys[];
    v_keys integer := coalesce(cardinality(array_remove(p_claim_keys, NULL)), 0);
    v_release_keys integer := coalesce(cardinality(array_remove(p_release_keys, NULL)), 0);
    v_decided coupon_part_decision[];
    r coupon_part_decision;
    v_fresh bigint := 0;
    v_released_fresh bigint := 0;
    v_outcomes text[];
    v_replayed boolean[];
    v_claimed_ats timestamptz[];
    v_expires_ats timestamptz[];
    v_release_outcomes text[];
    v_release_replayed boolean[];
BEGIN
    PERFORM 1 FROM coupons AS k WHERE k.name = p_coupon_name FOR UPDATE;
    v_claim_stored := stored_keys(p_claim_scope, p_claim_keys);
    v_release_stored := stored_keys(p_release_scope, p_release_keys);
    v_decided := ARRAY(
        SELECT ROW(1, d.*)::coupon_part_decision
          FROM claim_many(p_coupon_name,
                          unstored_arrivals(p_users, p_claim_keys, v_claim_stored),
                          unstored_arrivals(p_releases, p_release_keys, v_release_stored),
                          p_release_actors) AS d);
    r := v_decided[1];
    IF v_keys > 0 THEN
        SELECT * INTO v_fresh, v_outcomes, v_replayed, v_claimed_ats, v_expires_ats
          FROM keep_claim_keys(p_claim_scope, array_fill(1, ARRAY[cardinality(p_users)]),
                               p_users, p_claim_keys, p_claim_prints, v_claim_stored,
                               v_decided);
    END IF;
    IF v_release_keys > 0 THEN
        SELECT * INTO v_released_fresh, v_release_outcomes, v_release_replayed
          FROM keep_release_keys(p_release_scope, array_fill(1, ARRAY[cardinality(p_releases)]),
                                 p_releases, p_release_keys, p_release_prints,
                                 v_release_stored, v_decided);
    END IF;
    IF v_fresh + v_released_fresh + cardinality(v_claim_stored)
       + cardinality(v_release_stored) < v_keys + v_release_keys THEN
        RAISE EXCEPTION 'an idempotency key of this batch was taken by another request'
            USING ERRCODE = 'FSK01';
    END IF;
    RETURN QUERY
        SELECT r.coupon_id, r.remaining, r.claimed, r.holders, r.refusal, r.claimed_at,
               r.expires_at, r.released, r.redeemed, v_outcomes, v_replayed, v_claimed_ats,
               v_expires_ats, v_release_outcomes, v_release_replayed;
END
$$;

-- claim_many_new_keys: claim_many for a batch whose claim keys are all
-- believed new (no release key).
-- In:  claim_many's, then the claims' key scope, keys and fingerprints
--      (parallel to p_users, NULL where an arrival has none); last,
--      claim_many's p_release_actors.
-- Out: claim_many's row and claim_outcomes, each keyed arrival's decision.
-- Locks: claim_many's, then the key rows it inserts, in key order.
-- Fails with unique_violation on idempotency_keys_pkey, and the whole batch
--      rolls back, when a key is stored or inserted by another transaction
--      that commits; the store then sends the batch to claim_many_keyed,
--      whose probe replays it. Skipping the probe and ON CONFLICT is what
--      this saves (migrations/0014_fresh_keys_first.sql measures it).
-- Triggers: claim_many's.
CREATE FUNCTION claim_many_new_keys(p_coupon_name text, p_users text[], p_releases text[],
                                    p_scope text, p_keys text[], p_prints bytea[],
                                    p_release_actors jsonb DEFAULT NULL)
RETURNS TABLE (coupon_id bigint, remaining integer, claimed text[], holders text[],
               refusal text, claimed_at timestamptz, expires_at timestamptz,
               released text[], redeemed text[], claim_outcomes text[])
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    r record;
    v_outcomes text[];
BEGIN
    SELECT * INTO r FROM claim_many(p_coupon_name, p_users, p_releases, p_release_actors);
    -- Read as the store reads claim_many's answer (keep_claim_keys, 0013):
    -- granted; else a holder (every ungranted user when the stock covered
    -- the batch: holders is NULL then); else why the sale refused, or sold_out.
    WITH arrival AS (
        SELECT u.ord, u.key, u.print,
               CASE WHEN r.coupon_id IS NULL THEN 'not_found'
                    WHEN g.user_id IS NOT NULL THEN 'claimed'
                    WHEN r.holders IS NULL OR h.user_id IS NOT NULL THEN 'already_claimed'
                    ELSE coalesce(r.refusal, 'sold_out') END AS outcome
          FROM unnest(p_users, p_keys, p_prints) WITH ORDINALITY AS u(user_id, key, print, ord)
          LEFT JOIN unnest(r.claimed) AS g(user_id) ON g.user_id = u.user_id
          LEFT JOIN unnest(r.holders) AS h(user_id) ON h.user_id = u.user_id
    ), stored AS (
        -- Runs to completion although nothing reads it (PostgreSQL executes
        -- a data-modifying WITH exactly once, whatever the main query reads).
        INSERT INTO idempotency_keys (scope, key, fingerprint, outcome, claimed_at, expires_at)
        SELECT p_scope, a.key, a.print, a.outcome,
               CASE WHEN a.outcome IN ('claimed', 'entered') THEN r.claimed_at END,
               CASE WHEN a.outcome IN ('claimed', 'entered') THEN r.expires_at END
          FROM arrival AS a
         WHERE a.key IS NOT NULL
         ORDER BY a.key
    )
    SELECT array_agg(CASE WHEN a.key IS NOT NULL THEN a.outcome END ORDER BY a.ord)
      INTO v_outcomes
      FROM arrival AS a;
    RETURN QUERY
        SELECT r.coupon_id, r.remaining, r.claimed, r.holders, r.refusal, r.claimed_at,
               r.expires_at, r.released, r.redeemed, v_outcomes;
END
$$;

-- claim_many_coupons: one batch of several coupons' claims and releases, in
-- one transaction (a lane's batch: claims/lanes.py).
-- In:  p_coupons, distinct coupon names (the batch's parts, numbered from 1);
--      p_user_counts, how many users each part has; p_user_parts and p_users,
--      parallel: each distinct user of a part with its part's number, part 1's
--      first; p_release_parts and p_releases likewise for the releases;
--      p_release_actors, parallel to p_coupons: each part's claim_many
--      p_release_actors (as text; '{}' or NULL: nobody named).
-- Out: one row per part: part (its number) and claim_many's row for that
--      coupon's users and releases (the fast parts first, then the sold-out
--      ones, then the others; within each in no set order: callers sort by part).
-- Locks: every coupon's row first, FOR UPDATE in one statement ordered by
--      coupons.id (LockRows runs above the sort, so rows are locked in id
--      order): two such batches wait for each other's coupons in the same
--      order, and every other writer holds at most one coupon row while it
--      waits for one (change_coupon, redeem_claim, claim_many and its keyed
--      wrappers), or never waits (expire_holds: SKIP LOCKED). No deadlock.
-- Decides each part as claim_many decides it, under its row lock, in two
--      ways. The common part (the sale open, no hold due, no release, stock
--      for every user: claim_many's first INSERT and nothing else) goes in one
--      INSERT for all such parts, so the statement triggers run once for the
--      batch (they group by coupon: each coupon's events keep their own
--      gap-free seq). Every other part is a call of claim_many itself (whose
--      own FOR UPDATE finds its lock held). No subtransaction (no EXCEPTION
--      block: more than 64 in one transaction overflow the per-backend
--      cache): an error in one part fails the whole statement, and the store
--      then decides each part on its own (storage/lane_batches.py).
CREATE FUNCTION claim_many_coupons(p_coupons text[], p_user_counts integer[],
                                   p_user_parts integer[], p_users text[],
                                   p_release_parts integer[], p_releases text[],
                                   p_release_actors text[] DEFAULT '{}')
RETURNS TABLE (part integer, coupon_id bigint, remaining integer, claimed text[],
               holders text[], refusal text, claimed_at timestamptz, expires_at timestamptz,
               released text[], redeemed text[])
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz;
    v_fast integer[];
    v_gone integer[];
    v_rows coupons[];
    v_parts integer[];
BEGIN
    -- The locked rows are kept: FOR UPDATE returns each row's newest version
    -- (re-read after any wait), so the decision reads them here instead of
    -- looking every coupon up twice more by name (0024).
    v_rows := ARRAY(SELECT k FROM coupons AS k
                     WHERE k.name = ANY (p_coupons) ORDER BY k.id FOR UPDATE);
    -- Each locked row's part number, parallel to v_rows: the statements
    -- below read a row's part as v_parts[its place], where joining the rows
    -- to p_coupons by name read the whole array again for each part (a
    -- nested loop over two function scans: 0.3 ms for 37 parts, 0027).
    v_parts := ARRAY(SELECT array_position(p_coupons, c.name)
                       FROM unnest(v_rows) WITH ORDINALITY AS c ORDER BY c.ordinality);
    v_now := clock_timestamp();
    -- The fast parts have stock for every user; the sold-out parts none (a
    -- coupon another worker sold out, or claims that waited for the batch
    -- that sold it): both only on claim_many's plain path (sale open, no
    -- hold due, no release, first come).
    SELECT coalesce(array_agg(p.part) FILTER (WHERE c.remaining_amount >= p.n), '{}'),
           coalesce(array_agg(p.part) FILTER (WHERE c.remaining_amount = 0 AND p.n > 0), '{}')
      INTO v_fast, v_gone
      FROM unnest(v_rows) WITH ORDINALITY AS c
      CROSS JOIN LATERAL (SELECT v_parts[c.ordinality] AS part,
                                 p_user_counts[v_parts[c.ordinality]] AS n) AS p
     WHERE sale_refusal(c.starts_at, c.ends_at, c.active, v_now) IS NULL
       AND (c.holds_due_at IS NULL OR c.holds_due_at > v_now)
       AND c.allocation = 'first_come'  -- a raffle's part is claim_many's (0021)
       AND p.part <> ALL (p_release_parts);
    -- Each statement only when it has parts: an INSERT of no rows still
    -- fires the statement triggers, and the sold-out statement is planned
    -- anew on every call (0025).
    IF cardinality(v_fast) > 0 THEN
        RETURN QUERY
            WITH fast AS (
                SELECT v_parts[c.ordinality] AS part, c.id, c.name, c.remaining_amount,
                       v_now + make_interval(secs => c.hold_seconds) AS expires_at
                  FROM unnest(v_rows) WITH ORDINALITY AS c
                 WHERE v_parts[c.ordinality] = ANY (v_fast)
            ), inserted AS (
                INSERT INTO claims (coupon_id, coupon_name, user_id, claimed_at, expires_at)
                SELECT f.id, f.name, u.user_id, v_now, f.expires_at
                  FROM unnest(p_user_parts, p_users) WITH ORDINALITY AS u(part, user_id, ord)
                  JOIN fast AS f ON f.part = u.part
                 ORDER BY u.ord
                ON CONFLICT DO NOTHING
                RETURNING claims.coupon_id, claims.user_id
            ), granted AS (
                SELECT i.coupon_id, array_agg(i.user_id) AS users
                  FROM inserted AS i GROUP BY i.coupon_id
            )
            SELECT f.part, f.id, f.remaining_amount - coalesce(cardinality(g.users), 0),
                   coalesce(g.users, '{}'), NULL::text[], NULL::text, v_now, f.expires_at,
                   '{}'::text[], '{}'::text[]
              FROM fast AS f LEFT JOIN granted AS g ON g.coupon_id = f.id;
    END IF;
    -- A sold-out part: what claim_many's scarce-stock path answers with no
    -- unit left (nobody granted, its users' claims as holders, no refusal:
    -- sold_out), read in one statement for all such parts instead of a
    -- claim_many call each (0024). A statement after the locks: it sees
    -- every claim committed before them.
    IF cardinality(v_gone) > 0 THEN
        RETURN QUERY
            SELECT p.part, c.id, 0, '{}'::text[],
                   ARRAY(SELECT h.user_id
                           FROM unnest(p_user_parts, p_users) AS u(part, user_id)
                           JOIN claims AS h ON h.coupon_id = c.id AND h.user_id = u.user_id
                          WHERE u.part = p.part),
                   NULL::text, v_now, v_now + make_interval(secs => c.hold_seconds),
                   '{}'::text[], '{}'::text[]
              FROM unnest(v_rows) WITH ORDINALITY AS c
              CROSS JOIN LATERAL (SELECT v_parts[c.ordinality] AS part) AS p
             WHERE p.part = ANY (v_gone);
    END IF;
    FOR v_part IN 1 .. coalesce(cardinality(p_coupons), 0) LOOP
        CONTINUE WHEN v_part = ANY (v_fast) OR v_part = ANY (v_gone);
        RETURN QUERY
            SELECT v_part, r.coupon_id, r.remaining, r.claimed, r.holders, r.refusal,
                   r.claimed_at, r.expires_at, r.released, r.redeemed
              FROM claim_many(p_coupons[v_part],
                              ARRAY(SELECT u.user_id
                                      FROM unnest(p_user_parts, p_users)
                                           WITH ORDINALITY AS u(part, user_id, ord)
                                     WHERE u.part = v_part ORDER BY u.ord),
                              ARRAY(SELECT u.user_id
                                      FROM unnest(p_release_parts, p_releases)
                                           WITH ORDINALITY AS u(part, user_id, ord)
                                     WHERE u.part = v_part ORDER BY u.ord),
                              p_release_actors[v_part]::jsonb) AS r;
    END LOOP;
END
$$;

-- claim_many_coupons_keyed: claim_many_coupons for a lane's batch in which
-- some parts carry Idempotency-Keys: every part of the batch, keyed or not,
-- in one round trip and one transaction.
-- In:  claim_many_coupons', then the claims' key scope, keys and
--      fingerprints (p_claim_keys and p_claim_prints parallel to p_users,
--      NULL where an arrival has none) and the releases' (parallel to
--      p_releases). A key's scope is its route's, the same for every part.
-- Out: claim_many_coupons' row per part, then each keyed arrival's decision
--      in that part's arrival order, as claim_many_keyed returns them
--      (NULL where an arrival has no key; all NULL for a part without keys).
-- Locks: claim_many_coupons' (every coupon's row first, in coupons.id order,
--      in the first statement here), then the key rows it inserts: every
--      claim key of the batch in one INSERT in key order, then every release
--      key likewise, as claim_many_keyed inserts them (one scope per kind),
--      so this and claim_many_keyed never wait for each other's keys in
--      opposite orders.
-- Raises FSK01 (the batch rolls back whole) when a request for another
--      coupon committed one of these keys meanwhile, as claim_many_keyed
--      does; the store sends the batch again, which then finds the key.
-- Decides keyed parts as claim_many_keyed decides them, step by step:
-- 1. The coupons' row locks first: batches of one coupon run in turn, so the
--    keys an earlier batch stored are committed and visible to the read in 2
--    (READ COMMITTED: a statement sees what committed before it began).
-- 2. Arrivals whose key is stored (stored_keys: one primary-key probe per
--    key) leave the batch (a replay changes nothing).
-- 3. claim_many_coupons decides the rest (its FOR UPDATE finds the locks
--    held), unkeyed parts exactly as without this wrapper.
-- 4. One INSERT per kind for the whole batch (keep_claim_keys,
--    keep_release_keys) stores each fresh key with its part's decision.
-- No subtransaction: an error in one part fails the statement, and the store
-- decides each part on its own (storage/lane_batches.py).
CREATE FUNCTION claim_many_coupons_keyed(p_coupons text[], p_user_counts integer[],
                                         p_user_parts integer[], p_users text[],
                                         p_release_parts integer[], p_releases text[],
                                         p_release_actors text[],
                                         p_claim_scope text, p_claim_keys text[],
                                         p_claim_prints bytea[], p_release_scope text,
                                         p_release_keys text[], p_release_prints bytea[])
RETURNS TABLE (part integer, coupon_id bigint, remaining integer, claimed text[],
               holders text[], refusal text, claimed_at timestamptz, expires_at timestamptz,
               released text[], redeemed text[],
               claim_outcomes text[], claim_replayed boolean[],
               claim_claimed_ats timestamptz[], claim_expires_ats timestamptz[],
               release_outcomes text[], release_replayed boolean[])
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_claim_stored idempotency_keys[];
    v_release_stored idempotency_keys[];
    v_user_parts integer[];
    v_users text[];
    v_release_parts integer[];
    v_releases text[];
    v_decided coupon_part_decision[];
    v_keys integer := coalesce(cardinality(array_remove(p_claim_keys, NULL)), 0);
    v_release_keys integer := coalesce(cardinality(array_remove(p_release_keys, NULL)), 0);
    v_fresh bigint := 0;
    v_released_fresh bigint := 0;
    v_outcomes text[];
    v_replayed boolean[];
    v_claimed_ats timestamptz[];
    v_expires_ats timestamptz[];
    v_release_outcomes text[];
    v_release_replayed boolean[];
BEGIN
    PERFORM 1 FROM coupons AS k WHERE k.name = ANY (p_coupons) ORDER BY k.id FOR UPDATE;
    v_claim_stored := stored_keys(p_claim_scope, p_claim_keys);
    v_release_stored := stored_keys(p_release_scope, p_release_keys);
    SELECT coalesce(array_agg(u.part ORDER BY u.ord), '{}'),
           coalesce(array_agg(u.user_id ORDER BY u.ord), '{}')
      INTO v_user_parts, v_users
      FROM unnest(p_user_parts, p_users, p_claim_keys) WITH ORDINALITY AS u(part, user_id, key, ord)
     WHERE u.key IS NULL OR u.key <> ALL (ARRAY(SELECT s.key FROM unnest(v_claim_stored) AS s));
    SELECT coalesce(array_agg(u.part ORDER BY u.ord), '{}'),
           coalesce(array_agg(u.user_id ORDER BY u.ord), '{}')
      INTO v_release_parts, v_releases
      FROM unnest(p_release_parts, p_releases, p_release_keys)
           WITH ORDINALITY AS u(part, user_id, key, ord)
     WHERE u.key IS NULL OR u.key <> ALL (ARRAY(SELECT s.key FROM unnest(v_release_stored) AS s));
    v_decided := ARRAY(
        SELECT ROW(d.*)::coupon_part_decision
          FROM claim_many_coupons(
                   p_coupons,
                   ARRAY(SELECT count(u.part)::integer
                           FROM generate_subscripts(p_coupons, 1) AS p(ord)
                           LEFT JOIN unnest(v_user_parts) AS u(part) ON u.part = p.ord
                          GROUP BY p.ord ORDER BY p.ord),
                   v_user_parts, v_users, v_release_parts, v_releases,
                   p_release_actors) AS d);
    IF v_keys > 0 THEN
        SELECT * INTO v_fresh, v_outcomes, v_replayed, v_claimed_ats, v_expires_ats
          FROM keep_claim_keys(p_claim_scope, p_user_parts, p_users, p_claim_keys,
                               p_claim_prints, v_claim_stored, v_decided);
    END IF;
    IF v_release_keys > 0 THEN
        SELECT * INTO v_released_fresh, v_release_outcomes, v_release_replayed
          FROM keep_release_keys(p_release_scope, p_release_parts, p_releases, p_release_keys,
                                 p_release_prints, v_release_stored, v_decided);
    END IF;
    IF v_fresh + v_released_fresh + cardinality(v_claim_stored)
       + cardinality(v_release_stored) < v_keys + v_release_keys THEN
        RAISE EXCEPTION 'an idempotency key of this batch was taken by another request'
            USING ERRCODE = 'FSK01';
    END IF;
    -- Each part's slice of the arrivals' decisions (p_users and p_releases
    -- hold each part's arrivals in order, numbered by part).
    RETURN QUERY
        SELECT d.part, d.coupon_id, d.remaining, d.claimed, d.holders, d.refusal, d.claimed_at,
               d.expires_at, d.released, d.redeemed,
               c.outcomes, c.replayed, c.claimed_ats, c.expires_ats, r.outcomes, r.replayed
          FROM unnest(v_decided) AS d
          CROSS JOIN LATERAL (
              SELECT array_agg(x.outcome ORDER BY x.ord) AS outcomes,
                     array_agg(x.replayed ORDER BY x.ord) AS replayed,
                     array_agg(x.claimed_at ORDER BY x.ord) AS claimed_ats,
                     array_agg(x.expires_at ORDER BY x.ord) AS expires_ats
                FROM unnest(p_user_parts, v_outcomes, v_replayed, v_claimed_ats, v_expires_ats)
                     WITH ORDINALITY AS x(part, outcome, replayed, claimed_at, expires_at, ord)
               WHERE x.part = d.part AND v_keys > 0) AS c
          CROSS JOIN LATERAL (
              SELECT array_agg(x.outcome ORDER BY x.ord) AS outcomes,
                     array_agg(x.replayed ORDER BY x.ord) AS replayed
                FROM unnest(p_release_parts, v_release_outcomes, v_release_replayed)
                     WITH ORDINALITY AS x(part, outcome, replayed, ord)
               WHERE x.part = d.part AND v_release_keys > 0) AS r
         ORDER BY d.part;
END
$$;

-- sold_out_batch: the sold-out lane's answers for a coupon believed sold out.
-- In:  p_coupon_name, p_users.
-- Out: a row per arrival: holds (the user has a live claim), with the
--      coupon's id, its stock counting due holds as returned (so a sold-out
--      hint never outlives an expiry, swept or not) and the refusal decided
--      as claim_many decides it (so this lane answers what the claim lane
--      would: paused wins over sold_out).
-- Locks: none: a plain snapshot read. Triggers: none.
CREATE FUNCTION sold_out_batch(p_coupon_name text, p_users text[])
RETURNS TABLE (arrival integer, holds boolean, coupon_id bigint, remaining integer,
               refusal text)
LANGUAGE sql STABLE AS $$
    WITH k AS (
        SELECT c.id,
               c.remaining_amount
                   + (SELECT count(*)::integer FROM claims AS d
                       WHERE c.holds_due_at <= now()
                         AND d.coupon_id = c.id AND d.redeemed_at IS NULL
                         AND d.expires_at IS NOT NULL AND d.expires_at <= now()) AS remaining,
               coalesce(sale_refusal(c.starts_at, c.ends_at, c.active, now()),
                        nullif(raffle_refusal(c.id, c.draw_at, c.drawn_at, now()), 'entered'))
                   AS refusal
          FROM coupons AS c WHERE c.name = p_coupon_name
    )
    SELECT u.ord::integer,
           -- OFFSET 0 keeps this a probe of the primary key per arrival: an
           -- EXISTS may otherwise be planned as a hash of every claim of
           -- every coupon, built on each call (0025).
           EXISTS (SELECT 1 FROM claims AS h
                    WHERE h.coupon_id = k.id AND h.user_id = u.user_id
                      AND (h.redeemed_at IS NOT NULL OR h.expires_at IS NULL
                           OR h.expires_at > now())
                   OFFSET 0),
           k.id,
           k.remaining,
           k.refusal
      FROM unnest(p_users) WITH ORDINALITY AS u(user_id, ord)
      LEFT JOIN k ON true
     ORDER BY u.ord
$$;

-- sold_out_coupons: sold_out_batch for several coupons in one read (the
-- sold-out lanes' batch across coupons).
-- In:  p_coupons, distinct names; p_user_counts, how many of p_users are each
--      coupon's (p_users holds the first coupon's users, then the second's...).
-- Out: sold_out_batch's rows for each coupon, with its part number (from 1).
-- Locks: none: a plain snapshot read. Triggers: none.
CREATE FUNCTION sold_out_coupons(p_coupons text[], p_user_counts integer[], p_users text[])
RETURNS TABLE (part integer, arrival integer, holds boolean, coupon_id bigint,
               remaining integer, refusal text)
LANGUAGE sql STABLE AS $$
    WITH p AS (
        SELECT c.name, c.ord::integer AS part, c.n,
               (sum(c.n) OVER (ORDER BY c.ord))::integer - c.n AS before
          FROM unnest(p_coupons, p_user_counts) WITH ORDINALITY AS c(name, n, ord)
    )
    SELECT p.part, s.arrival, s.holds, s.coupon_id, s.remaining, s.refusal
      FROM p CROSS JOIN LATERAL sold_out_batch(p.name, p_users[p.before + 1 : p.before + p.n]) AS s
     ORDER BY p.part, s.arrival
$$;

-- =========================================================================
-- 5. Holds and sweeping
-- =========================================================================
--
-- A hold is a claim with expires_at. Past it, unless redeemed, the claim is
-- not live: the views below already treat it as gone, and the sweeper or the
-- claim path deletes it, returning its unit.

-- expire_coupon_holds: deletes coupon p_coupon_id's unredeemed holds due at
-- p_at, recorded as expired, and sets coupons.holds_due_at exactly.
-- Out: how many it deleted.
-- Locks: callers hold the coupon's row lock, so deletes of one coupon's
--      claims always lock the coupon first, then claims (no deadlock between
--      sweepers, claims and releases).
-- Triggers: claims_return_stock (the units go back).
CREATE FUNCTION expire_coupon_holds(p_coupon_id bigint, p_at timestamptz)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_count integer;
BEGIN
    PERFORM set_config('flashsale.end_reason', 'expired', true);
    DELETE FROM claims AS h
     WHERE h.coupon_id = p_coupon_id AND h.redeemed_at IS NULL
       AND h.expires_at IS NOT NULL AND h.expires_at <= p_at;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    PERFORM set_config('flashsale.end_reason', '', true);
    UPDATE coupons AS c
       SET holds_due_at = (SELECT h.expires_at FROM claims AS h
                            WHERE h.coupon_id = p_coupon_id AND h.redeemed_at IS NULL
                              AND h.expires_at IS NOT NULL
                            ORDER BY h.expires_at LIMIT 1)
     WHERE c.id = p_coupon_id;
    RETURN v_count;
END
$$;

-- expire_holds: the sweeper's one statement (every worker of every
-- instance runs it on a timer).
-- In:  p_coupons, the most coupons one call sweeps. Out: holds expired.
-- Locks: up to p_coupons coupons with due holds, each FOR UPDATE SKIP LOCKED,
--      then their due holds (expire_coupon_holds). A coupon another sweeper
--      holds is being swept; one a claim batch holds is swept by a batch
--      (claim_many, within a second). The DELETE re-checks its rows after any
--      lock wait, so a hold redeemed meanwhile stays, and a hold already
--      deleted is not deleted again: each unit comes back once
--      (claim_history_claim_key would refuse a second ending anyway).
-- Triggers: claims_return_stock.
CREATE FUNCTION expire_holds(p_coupons integer)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_coupon bigint;
    v_total integer := 0;
BEGIN
    FOR v_coupon IN
        SELECT c.id FROM coupons AS c
         WHERE c.holds_due_at <= now()
         ORDER BY c.holds_due_at
         LIMIT p_coupons
         FOR UPDATE SKIP LOCKED
    LOOP
        v_total := v_total + expire_coupon_holds(v_coupon, clock_timestamp());
        PERFORM raffle_promote(v_coupon, clock_timestamp());  -- the units to the waitlist (0021)
    END LOOP;
    RETURN v_total;
END
$$;

-- Coupons as clients see them: a hold past its expiry is gone even before
-- the sweep deletes it (its unit counts as remaining), and the status is
-- decided by PostgreSQL's clock.
CREATE VIEW coupon_state AS
SELECT c.id, c.name, c.amount,
       c.remaining_amount + due.holds AS remaining_amount,
       raffle_status(coupon_status(c.starts_at, c.ends_at, c.active,
                                   c.remaining_amount + due.holds, now()),
                     c.draw_at, c.drawn_at, now()) AS status,
       c.starts_at, c.ends_at, c.hold_seconds, c.active,
       (SELECT count(*)::integer FROM claims AS r
         WHERE r.coupon_id = c.id AND r.redeemed_at IS NOT NULL) AS redeemed,
       c.allocation, c.draw_at, encode(c.draw_commitment, 'hex') AS draw_commitment,
       (SELECT encode(s.seed, 'hex') FROM raffle_seeds AS s
         WHERE c.drawn_at IS NOT NULL AND s.coupon_id = c.id) AS draw_seed,
       CASE WHEN c.allocation = 'raffle' THEN c.draw_entries END AS entries,
       (SELECT d.winners FROM raffle_draws AS d
         WHERE c.drawn_at IS NOT NULL AND d.coupon_id = c.id) AS draw_winners,
       (SELECT d.entries - d.winners - d.promoted FROM raffle_draws AS d
         WHERE c.drawn_at IS NOT NULL AND d.coupon_id = c.id) AS waitlisted
  FROM coupons AS c
 CROSS JOIN LATERAL (SELECT count(*)::integer AS holds FROM claims AS d
                      WHERE c.holds_due_at <= now()
                        AND d.coupon_id = c.id AND d.redeemed_at IS NULL
                        AND d.expires_at IS NOT NULL AND d.expires_at <= now()) AS due;

-- Claims as clients see them: held (not yet expired) or redeemed.
CREATE VIEW live_claims AS
SELECT h.id, h.coupon_id, h.coupon_name, h.user_id, h.claimed_at, h.expires_at, h.redeemed_at,
       CASE WHEN h.redeemed_at IS NULL THEN 'held' ELSE 'redeemed' END AS status
  FROM claims AS h
 WHERE h.redeemed_at IS NOT NULL OR h.expires_at IS NULL OR h.expires_at > now();

-- =========================================================================
-- 6. Events
-- =========================================================================

-- The events feed: every change of a coupon or of its claims, written by
-- triggers in the same transaction as the change. seq is the coupon's own
-- gapless number (coupons.event_seq, advanced under the coupon's row lock,
-- so in commit order); xid the global feed's order: the writer's
-- transaction id, raised to the coupon's previous event's (coupons.event_xid)
-- so that one coupon's never go down (the reasons are in
-- migrations/0009_events.sql; why the feed never skips: queries.sql
-- events_page). Written by claims_take_stock (claimed), claims_return_stock
-- (released, expired) and the triggers below.
CREATE TABLE events (
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    xid         xid8        NOT NULL DEFAULT pg_current_xact_id(),
    coupon_id   bigint      NOT NULL,
    coupon_name text        NOT NULL,
    seq         bigint      NOT NULL,
    type        text        NOT NULL,
    user_id     text,
    at          timestamptz NOT NULL,
    data        jsonb       NOT NULL DEFAULT '{}',
    -- No foreign key: events outlive their coupon (like claim_history).
    CONSTRAINT events_pkey PRIMARY KEY (coupon_id, seq),
    CONSTRAINT events_type CHECK (
        type IN ('coupon_created', 'coupon_changed', 'claimed', 'released', 'expired', 'redeemed',
                 'waitlisted', 'raffle_drawn'))
);

-- The global feed's keyset. Only these two indexes: every claim writes a row.
CREATE UNIQUE INDEX events_feed_idx ON events (xid, id);

-- Who made this transaction's admin change, as an event's data: {"actor":
-- {"kind": ..., "name": ...}} when the service named one (queries.sql
-- act_as: create, change, redeem), else {} (claims, sweeps, a change made
-- by hand). A transaction-local setting, so it never outlives the change.
CREATE FUNCTION event_actor_data() RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN coalesce(current_setting('flashsale.actor', true), '') = ''
                THEN '{}'::jsonb
                ELSE jsonb_build_object('actor', current_setting('flashsale.actor', true)::jsonb)
           END
$$;

-- A new coupon's first event. The row's event_seq is 1 (the BEFORE trigger)
-- whatever an INSERT says, so the next event is 2; its event_xid is the
-- creator's, so no later event of the coupon sorts before its creation.
CREATE FUNCTION coupons_number_creation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.event_seq := 1;
    NEW.event_xid := pg_current_xact_id();
    RETURN NEW;
END
$$;

CREATE TRIGGER coupons_number_creation
    BEFORE INSERT ON coupons
    FOR EACH ROW EXECUTE FUNCTION coupons_number_creation();

CREATE FUNCTION coupons_record_creation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (xid, coupon_id, coupon_name, seq, type, at, data)
    SELECT n.event_xid, n.id, n.name, n.event_seq, 'coupon_created', n.created_at,
           jsonb_build_object('amount', n.amount, 'remaining_amount', n.remaining_amount,
                              'starts_at', n.starts_at, 'ends_at', n.ends_at,
                              'active', n.active, 'hold_seconds', n.hold_seconds)
           -- A raffle's event says so (0021); a first-come one's is as before.
           || CASE WHEN n.allocation = 'raffle'
                   THEN jsonb_build_object('allocation', n.allocation, 'draw_at', n.draw_at,
                                           'draw_commitment', encode(n.draw_commitment, 'hex'))
                   ELSE '{}'::jsonb END
           || event_actor_data()
      FROM new_coupons AS n;
    RETURN NULL;
END
$$;

CREATE TRIGGER coupons_record_creation
    AFTER INSERT ON coupons
    REFERENCING NEW TABLE AS new_coupons
    FOR EACH STATEMENT EXECUTE FUNCTION coupons_record_creation();

-- A change of what an admin sets (restock, window, pause and resume, holds),
-- with the changed fields in data; a restock also says the new remaining
-- amount. The WHEN keeps it off the claim path: claim batches and sweeps
-- move only remaining_amount, holds_due_at and event_seq. The row is locked
-- and at its final version when a BEFORE ROW trigger runs; if the UPDATE
-- then fails a CHECK, the statement and this event roll back together.
CREATE FUNCTION coupons_record_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_data jsonb := '{}';
BEGIN
    IF NEW.amount IS DISTINCT FROM OLD.amount THEN
        v_data := v_data || jsonb_build_object('amount', NEW.amount,
                                               'remaining_amount', NEW.remaining_amount);
    END IF;
    IF NEW.starts_at IS DISTINCT FROM OLD.starts_at THEN
        v_data := v_data || jsonb_build_object('starts_at', NEW.starts_at);
    END IF;
    IF NEW.ends_at IS DISTINCT FROM OLD.ends_at THEN
        v_data := v_data || jsonb_build_object('ends_at', NEW.ends_at);
    END IF;
    IF NEW.active IS DISTINCT FROM OLD.active THEN
        v_data := v_data || jsonb_build_object('active', NEW.active);
    END IF;
    IF NEW.hold_seconds IS DISTINCT FROM OLD.hold_seconds THEN
        v_data := v_data || jsonb_build_object('hold_seconds', NEW.hold_seconds);
    END IF;
    IF NEW.allocation IS DISTINCT FROM OLD.allocation THEN
        v_data := v_data || jsonb_build_object('allocation', NEW.allocation);
    END IF;
    IF NEW.draw_at IS DISTINCT FROM OLD.draw_at THEN
        v_data := v_data || jsonb_build_object('draw_at', NEW.draw_at);
    END IF;
    NEW.event_seq := NEW.event_seq + 1;
    NEW.event_xid := greatest(NEW.event_xid, pg_current_xact_id());
    INSERT INTO events (xid, coupon_id, coupon_name, seq, type, at, data)
    VALUES (NEW.event_xid, NEW.id, NEW.name, NEW.event_seq, 'coupon_changed',
            clock_timestamp(), v_data || event_actor_data());
    RETURN NEW;
END
$$;

CREATE TRIGGER coupons_record_change
    BEFORE UPDATE ON coupons
    FOR EACH ROW
    WHEN (NEW.amount IS DISTINCT FROM OLD.amount
          OR NEW.starts_at IS DISTINCT FROM OLD.starts_at
          OR NEW.ends_at IS DISTINCT FROM OLD.ends_at
          OR NEW.active IS DISTINCT FROM OLD.active
          OR NEW.hold_seconds IS DISTINCT FROM OLD.hold_seconds
          OR NEW.allocation IS DISTINCT FROM OLD.allocation
          OR NEW.draw_at IS DISTINCT FROM OLD.draw_at)
    EXECUTE FUNCTION coupons_record_change();

-- Redemptions: the rows whose redeemed_at went from NULL to a time (claims
-- are matched on their primary key, which claims_forbid_update keeps fixed).
CREATE FUNCTION claims_record_redeems() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH r AS (
        SELECT k.id, k.coupon_id, k.coupon_name, k.user_id, k.redeemed_at
          FROM new_claims AS k
          JOIN old_claims AS o ON o.coupon_id = k.coupon_id AND o.user_id = k.user_id
         WHERE o.redeemed_at IS NULL AND k.redeemed_at IS NOT NULL
    ), counts AS (
        SELECT coupon_id, count(*) AS redeemed FROM r GROUP BY coupon_id
    ), moved AS (
        UPDATE coupons AS c
           SET event_seq = c.event_seq + counts.redeemed,
               event_xid = greatest(c.event_xid, pg_current_xact_id())
          FROM counts
         WHERE c.id = counts.coupon_id
        RETURNING c.id, c.event_seq - counts.redeemed AS base, c.event_xid AS xid
    )
    INSERT INTO events (xid, coupon_id, coupon_name, seq, type, user_id, at, data)
    SELECT m.xid, r.coupon_id, r.coupon_name,
           m.base + row_number() OVER (PARTITION BY r.coupon_id ORDER BY r.id),
           'redeemed', r.user_id, r.redeemed_at, event_actor_data()
      FROM r
      JOIN moved AS m ON m.id = r.coupon_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER claims_record_redeems
    AFTER UPDATE ON claims
    REFERENCING OLD TABLE AS old_claims NEW TABLE AS new_claims
    FOR EACH STATEMENT EXECUTE FUNCTION claims_record_redeems();

-- =========================================================================
-- 7. Webhooks
-- =========================================================================

-- An endpoint and its delivery state: one stream per (endpoint, coupon)
-- saying how far the endpoint got in the coupon's events. The events table
-- is the queue; deliverers lease streams in short statements and never hold
-- a transaction open during a POST (migrations/0010_webhooks.sql says why).
CREATE TABLE webhooks (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url             text        NOT NULL,
    events          text[]      NOT NULL,
    secret          text        NOT NULL,  -- whsec_ + base64 of the key (webhook_signing)
    created_at      timestamptz NOT NULL DEFAULT now(),
    disabled_at     timestamptz,
    disabled_reason text,
    -- Where queue_webhook_events is in the global feed, ordered by (xid, id):
    -- rows after this pair. It starts at the registering statement's xmin:
    -- every transaction that commits after that snapshot was in progress or
    -- not yet started when it was taken, so its xid is at least that xmin.
    feed_xid        xid8        NOT NULL DEFAULT pg_snapshot_xmin(pg_current_snapshot()),
    feed_id         bigint      NOT NULL DEFAULT 0,
    -- While a rotation lasts (webhook_signing): the secret replaced, still signing.
    previous_secret       text,
    previous_secret_until timestamptz,
    -- Who registered it, and who made its last change (registration,
    -- rotation, enabling, replay) and when: {"kind", "name"} (0019).
    created_by            jsonb,
    changed_by            jsonb,
    changed_at            timestamptz,
    CONSTRAINT webhooks_events_known CHECK (
        events <@ ARRAY['coupon_created', 'coupon_changed', 'claimed', 'released', 'expired',
                        'redeemed', 'waitlisted', 'raffle_drawn']::text[]
        AND cardinality(events) > 0)
);

CREATE TABLE webhook_streams (
    webhook_id      bigint      NOT NULL REFERENCES webhooks ON DELETE CASCADE,
    coupon_id       bigint      NOT NULL,  -- no foreign key: events outlive their coupon
    queued_seq      bigint      NOT NULL,  -- the coupon's last wanted event the feed showed
    delivered_seq   bigint      NOT NULL DEFAULT 0,
    attempts        integer     NOT NULL DEFAULT 0,  -- failed attempts of the next event
    failing_since   timestamptz,                     -- the first of them
    next_attempt_at timestamptz NOT NULL DEFAULT '-infinity',
    leased_until    timestamptz,
    lease           bigint      NOT NULL DEFAULT 0,  -- bumped by each lease: who may record
    last_error      text,
    last_error_at   timestamptz,
    delivered_at    timestamptz,
    PRIMARY KEY (webhook_id, coupon_id)
);

-- The streams with work, by when they are due (a predicate on two columns is
-- a valid partial index; caught-up streams leave it).
CREATE INDEX webhook_streams_due_idx ON webhook_streams (next_attempt_at)
    WHERE queued_seq > delivered_seq;

-- The pump: each enabled endpoint's next page of the global feed turned into
-- queued_seq of its streams (a stream per coupon, created on its first event).
-- A page is what events_page shows: (xid, id) after the cursor and xid below
-- pg_snapshot_xmin(pg_current_snapshot()), so no row can still appear behind
-- it. Each endpoint is taken FOR NO KEY UPDATE SKIP LOCKED: concurrent pumps
-- (every worker of every instance) split the endpoints and never read one
-- page twice; the lock conflicts with a DELETE and a disabling UPDATE of the
-- endpoint but not with the foreign-key checks of stream inserts. Returns the
-- fullest page's size (the caller pumps again while pages come back full).
CREATE FUNCTION queue_webhook_events(p_limit integer)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_hook record;
    v_read integer;
    v_fullest integer := 0;
BEGIN
    FOR v_hook IN
        SELECT w.id, w.events, w.feed_xid, w.feed_id
          FROM webhooks AS w
         WHERE w.disabled_at IS NULL
         ORDER BY w.id
           FOR NO KEY UPDATE SKIP LOCKED
    LOOP
        WITH page AS (
            SELECT e.xid, e.id, e.coupon_id, e.seq, e.type
              FROM events AS e
             WHERE (e.xid, e.id) > (v_hook.feed_xid, v_hook.feed_id)
               AND e.xid < pg_snapshot_xmin(pg_current_snapshot())
             ORDER BY e.xid, e.id
             LIMIT p_limit
        ), wanted AS (
            SELECT p.coupon_id, max(p.seq) AS seq
              FROM page AS p
             WHERE p.type = ANY (v_hook.events)
             GROUP BY p.coupon_id
        ), queued AS (
            -- A new stream starts at seq 0: its coupon had no stream when the
            -- endpoint registered (register_webhook made one for every coupon
            -- it saw), so the coupon was created after that snapshot.
            INSERT INTO webhook_streams AS s (webhook_id, coupon_id, queued_seq)
            SELECT v_hook.id, w.coupon_id, w.seq FROM wanted AS w ORDER BY w.coupon_id
            ON CONFLICT (webhook_id, coupon_id)
               DO UPDATE SET queued_seq = greatest(s.queued_seq, excluded.queued_seq)
        ), last AS (
            SELECT p.xid, p.id, count(*) OVER () AS read
              FROM page AS p
             ORDER BY p.xid DESC, p.id DESC
             LIMIT 1
        )
        UPDATE webhooks AS w
           SET feed_xid = last.xid, feed_id = last.id
          FROM last
         WHERE w.id = v_hook.id
        RETURNING last.read INTO v_read;
        v_fullest := greatest(v_fullest, coalesce(v_read, 0));
    END LOOP;
    RETURN v_fullest;
END
$$;

-- The secrets a delivery is signed with now: the current one first.
CREATE FUNCTION webhook_secrets(p_secret text, p_previous text, p_until timestamptz)
RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_until > now() THEN ARRAY[p_secret, p_previous] ELSE ARRAY[p_secret] END
$$;

-- Up to p_limit due streams leased for p_lease seconds, each with its next
-- event (NULL when there is none: the stream is caught up). FOR UPDATE SKIP
-- LOCKED: a stream another deliverer is leasing right now is skipped, and a
-- row that changed since the snapshot is re-checked at its newest version
-- (READ COMMITTED), so a lease taken meanwhile is seen.
CREATE FUNCTION lease_webhook_deliveries(p_limit integer, p_lease double precision)
RETURNS TABLE (webhook_id bigint, coupon_id bigint, lease bigint, url text, secrets text[],
               attempts integer, queued_seq bigint, event_id bigint, event_xid xid8,
               coupon_name text, seq bigint, type text, user_id text, at timestamptz,
               data jsonb)
LANGUAGE sql AS $$
    WITH due AS (
        SELECT s.webhook_id, s.coupon_id
          FROM webhook_streams AS s
          JOIN webhooks AS w ON w.id = s.webhook_id
         WHERE s.queued_seq > s.delivered_seq
           AND s.next_attempt_at <= now()
           AND (s.leased_until IS NULL OR s.leased_until <= now())
           AND w.disabled_at IS NULL
         ORDER BY s.next_attempt_at
         LIMIT p_limit
           FOR UPDATE OF s SKIP LOCKED
    ), leased AS (
        UPDATE webhook_streams AS s
           SET leased_until = now() + make_interval(secs => p_lease), lease = s.lease + 1
          FROM due
         WHERE s.webhook_id = due.webhook_id AND s.coupon_id = due.coupon_id
        RETURNING s.webhook_id, s.coupon_id, s.lease, s.attempts, s.delivered_seq, s.queued_seq
    )
    SELECT l.webhook_id, l.coupon_id, l.lease, w.url,
           webhook_secrets(w.secret, w.previous_secret, w.previous_secret_until),
           l.attempts, l.queued_seq, e.id, e.xid, e.coupon_name, e.seq, e.type, e.user_id,
           e.at, e.data
      FROM leased AS l
      JOIN webhooks AS w ON w.id = l.webhook_id
      LEFT JOIN LATERAL (
            SELECT e.id, e.xid, e.coupon_name, e.seq, e.type, e.user_id, e.at, e.data
              FROM events AS e
             WHERE e.coupon_id = l.coupon_id AND e.seq > l.delivered_seq
               AND e.type = ANY (w.events)
             ORDER BY e.seq
             LIMIT 1
      ) AS e ON true
$$;

-- Event p_seq of a leased stream delivered (2xx). Counts only under the same
-- lease and moving forward (a deliverer whose lease ran out and was taken
-- over records nothing). Returns the stream's next event with the lease
-- renewed, so a busy coupon's events flow without a new lease each; no row
-- when the lease was lost, the stream is caught up or its endpoint was
-- disabled meanwhile (lease let go).
CREATE FUNCTION webhook_delivered(p_webhook bigint, p_coupon bigint, p_lease bigint,
                                  p_seq bigint, p_renew double precision)
RETURNS TABLE (webhook_id bigint, coupon_id bigint, lease bigint, url text, secrets text[],
               attempts integer, queued_seq bigint, event_id bigint, event_xid xid8,
               coupon_name text, seq bigint, type text, user_id text, at timestamptz,
               data jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_events text[];
BEGIN
    UPDATE webhook_streams AS s
       SET delivered_seq = p_seq, attempts = 0, failing_since = NULL,
           next_attempt_at = '-infinity', delivered_at = now(),
           leased_until = now() + make_interval(secs => p_renew)
      FROM webhooks AS w
     WHERE s.webhook_id = p_webhook AND s.coupon_id = p_coupon AND s.lease = p_lease
       AND s.delivered_seq < p_seq AND w.id = s.webhook_id
    RETURNING w.events INTO v_events;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT s.webhook_id, s.coupon_id, s.lease, w.url,
               webhook_secrets(w.secret, w.previous_secret, w.previous_secret_until),
               s.attempts, s.queued_seq, e.id, e.xid, e.coupon_name, e.seq, e.type, e.user_id,
               e.at, e.data
          FROM webhook_streams AS s
          JOIN webhooks AS w ON w.id = s.webhook_id
          JOIN LATERAL (
                SELECT e.* FROM events AS e
                 WHERE e.coupon_id = p_coupon AND e.seq > p_seq AND e.type = ANY (v_events)
                 ORDER BY e.seq
                 LIMIT 1
          ) AS e ON true
         WHERE s.webhook_id = p_webhook AND s.coupon_id = p_coupon AND w.disabled_at IS NULL;
    IF NOT FOUND THEN
        UPDATE webhook_streams AS s SET leased_until = NULL
         WHERE s.webhook_id = p_webhook AND s.coupon_id = p_coupon AND s.lease = p_lease;
    END IF;
END
$$;

-- =========================================================================
-- 8. Sessions
-- =========================================================================

-- statement_timeout, lock_timeout and idle_in_transaction_session_timeout
-- as the service configures them, for its sessions only (0016): each pool
-- applies them to every connection it opens, and PgBouncer to every server
-- connection it opens (connect_query = apply_service_timeouts()). Not the
-- role's defaults (as 0005 had them): an operator's session as the same role
-- keeps PostgreSQL's. docs/database.md has the design.
CREATE TABLE service_timeouts (
    -- One row: the values of the last instance that started.
    singleton                  boolean PRIMARY KEY DEFAULT true,
    statement_timeout_ms       integer NOT NULL,
    lock_timeout_ms            integer NOT NULL,
    idle_in_transaction_ms     integer NOT NULL,
    stored_at                  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT service_timeouts_one_row CHECK (singleton),
    CONSTRAINT service_timeouts_not_negative CHECK (
        statement_timeout_ms >= 0 AND lock_timeout_ms >= 0 AND idle_in_transaction_ms >= 0)
);

-- This session takes the stored timeouts (session-level: they outlive the
-- transaction, as PgBouncer's connect_query needs); nothing when none are
-- stored yet.
CREATE FUNCTION apply_service_timeouts() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t service_timeouts%ROWTYPE;
BEGIN
    SELECT * INTO t FROM service_timeouts;
    IF FOUND THEN
        PERFORM set_config('statement_timeout', t.statement_timeout_ms::text, false);
        PERFORM set_config('lock_timeout', t.lock_timeout_ms::text, false);
        PERFORM set_config('idle_in_transaction_session_timeout',
                           t.idle_in_transaction_ms::text, false);
    END IF;
END
$$;

-- The role's own settings that 0005 stored, reset (only those three, and
-- only in this database).
CREATE FUNCTION reset_role_timeouts() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1
                 FROM pg_db_role_setting AS s, unnest(s.setconfig) AS setting
                WHERE s.setdatabase = (SELECT oid FROM pg_database
                                        WHERE datname = current_database())
                  AND s.setrole = (SELECT oid FROM pg_roles WHERE rolname = current_user)
                  AND split_part(setting, '=', 1) IN
                      ('idle_in_transaction_session_timeout', 'lock_timeout',
                       'statement_timeout')) THEN
        -- Instances upgrading together would update the same
        -- pg_db_role_setting row at once ("tuple concurrently updated").
        PERFORM pg_advisory_xact_lock(x'666C617374'::bigint);  -- "flast"
        EXECUTE format('ALTER ROLE %I IN DATABASE %I RESET statement_timeout',
                       current_user, current_database());
        EXECUTE format('ALTER ROLE %I IN DATABASE %I RESET lock_timeout',
                       current_user, current_database());
        EXECUTE format('ALTER ROLE %I IN DATABASE %I RESET idle_in_transaction_session_timeout',
                       current_user, current_database());
    END IF;
END
$$;

-- Start-up: the configured values (ms) stored and taken by this session;
-- the caller's 0005 role defaults reset. Returns whether the stored values
-- changed.
CREATE FUNCTION store_service_timeouts(
    p_statement_timeout_ms integer,
    p_lock_timeout_ms integer,
    p_idle_in_transaction_timeout_ms integer
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_changed boolean;
BEGIN
    PERFORM reset_role_timeouts();
    INSERT INTO service_timeouts AS t (statement_timeout_ms, lock_timeout_ms,
                                       idle_in_transaction_ms)
    VALUES (p_statement_timeout_ms, p_lock_timeout_ms, p_idle_in_transaction_timeout_ms)
    ON CONFLICT (singleton) DO UPDATE
       SET statement_timeout_ms = excluded.statement_timeout_ms,
           lock_timeout_ms = excluded.lock_timeout_ms,
           idle_in_transaction_ms = excluded.idle_in_transaction_ms,
           stored_at = now()
     WHERE (t.statement_timeout_ms, t.lock_timeout_ms, t.idle_in_transaction_ms)
           IS DISTINCT FROM (excluded.statement_timeout_ms, excluded.lock_timeout_ms,
                             excluded.idle_in_transaction_ms);
    v_changed := FOUND;
    PERFORM apply_service_timeouts();
    RETURN v_changed;
END
$$;
