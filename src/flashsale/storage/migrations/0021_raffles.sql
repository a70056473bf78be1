-- Raffles (issue 27): a coupon allocated by a draw anyone can check instead
-- of first come, first served. The rule is public and fixed
-- (src/flashsale/draw_rule.py, docs/raffle.md): entrants ordered by
-- HMAC-SHA256(key = a secret 32-byte seed, message = SHA-256 of the user id),
-- the first `amount` win, the rest wait in that order.
--
-- Entries go through the claim path (claim_many: one round trip per batch,
-- under the coupon's row lock, keys included): before draw_at an arrival
-- becomes a row of raffle_entries and hears 'entered'. The draw
-- (raffle_start_draws, raffle_draw_step) freezes the entries under the same
-- row lock with the same clock (clock_timestamp() after the lock: an entry
-- is decided before the freeze or refused after it), then places them in
-- chunks, one short transaction each, progress in raffle_draws. Returned
-- units go down the waitlist (raffle_promote) in the transaction that frees
-- them.

ALTER TABLE coupons
    ADD COLUMN allocation text NOT NULL DEFAULT 'first_come',
    ADD COLUMN draw_at timestamptz,
    -- sha256(seed), published from creation; the seed is in raffle_seeds.
    ADD COLUMN draw_commitment bytea,
    -- Set by the draw's last step: from then the seed is published.
    ADD COLUMN drawn_at timestamptz,
    -- Entries so far, moved by the entering batch under the row lock.
    ADD COLUMN draw_entries integer NOT NULL DEFAULT 0,
    ADD CONSTRAINT coupons_allocation_known CHECK (allocation IN ('first_come', 'raffle')),
    ADD CONSTRAINT coupons_raffle_draw_at CHECK ((allocation = 'raffle') = (draw_at IS NOT NULL)),
    -- NULL (an open end) passes: after starts_at when set, before ends_at when set.
    ADD CONSTRAINT coupons_draw_in_window CHECK (draw_at > starts_at AND draw_at < ends_at);

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
-- creation), so the draw only walks raffle_entries_order_idx. place is set
-- by the draw; it is in no index, so the draw's updates stay heap-only
-- (the fillfactor leaves each page room for them).
CREATE TABLE raffle_entries (
    coupon_id  bigint      NOT NULL,
    user_id    text        NOT NULL,
    entrant    bytea       NOT NULL,
    ticket     bytea       NOT NULL,
    entered_at timestamptz NOT NULL DEFAULT now(),
    place      integer,
    CONSTRAINT raffle_entries_pkey PRIMARY KEY (coupon_id, user_id)
) WITH (fillfactor = 80);

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

ALTER TABLE events DROP CONSTRAINT events_type;
ALTER TABLE events ADD CONSTRAINT events_type CHECK (
    type IN ('coupon_created', 'coupon_changed', 'claimed', 'released', 'expired', 'redeemed',
             'waitlisted', 'raffle_drawn'));
ALTER TABLE webhooks DROP CONSTRAINT webhooks_events_known;
ALTER TABLE webhooks ADD CONSTRAINT webhooks_events_known CHECK (
    events <@ ARRAY['coupon_created', 'coupon_changed', 'claimed', 'released', 'expired',
                    'redeemed', 'waitlisted', 'raffle_drawn']::text[]
    AND cardinality(events) > 0);

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
        TRUNCATE raffle_entries, raffle_seeds, raffle_draws;
        RETURN NULL;
    END IF;
    DELETE FROM raffle_entries AS e USING old_coupons AS o WHERE e.coupon_id = o.id;
    DELETE FROM raffle_seeds AS s USING old_coupons AS o WHERE s.coupon_id = o.id;
    DELETE FROM raffle_draws AS d USING old_coupons AS o WHERE d.coupon_id = o.id;
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

CREATE OR REPLACE FUNCTION claims_take_stock() RETURNS trigger
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

CREATE OR REPLACE FUNCTION coupons_record_creation() RETURNS trigger
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

CREATE OR REPLACE FUNCTION coupons_record_change() RETURNS trigger
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
-- raffle whose draw has not started waits for its resume. Out: the raffles
-- whose draw is to be stepped (started now, or earlier and unfinished: a
-- crash resumes here). The primary key of raffle_draws starts a draw once.
CREATE FUNCTION raffle_start_draws(p_limit integer)
RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
    v record;
BEGIN
    FOR v IN
        SELECT c.id, c.active, c.remaining_amount, c.draw_entries
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
            VALUES (v.id, v.draw_entries, least(v.remaining_amount, v.draw_entries))
            ON CONFLICT (coupon_id) DO NOTHING;
        END IF;
        IF EXISTS (SELECT 1 FROM raffle_draws AS d WHERE d.coupon_id = v.id) THEN
            RETURN NEXT v.id;
        END IF;
    END LOOP;
END
$$;

-- raffle_draw_step: the next p_chunk places of a started draw, in one
-- short transaction (the caller's), under the coupon's row lock; progress in
-- raffle_draws in the same transaction, so a crash between steps resumes at
-- the next place and nobody is placed (or wins) twice. The progress row is
-- read after the lock, in a statement of its own (READ COMMITTED: it sees
-- every step committed before). Places 1..winners get claims (reason
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
    v_rows tid[];
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
           array_agg(e.entrant ORDER BY e.ticket, e.entrant),
           array_agg(e.ctid ORDER BY e.ticket, e.entrant)
      INTO v_users, v_tickets, v_entrants, v_rows
      FROM (SELECT x.user_id, x.ticket, x.entrant, x.ctid FROM raffle_entries AS x
             WHERE x.coupon_id = p_coupon_id
               AND (x.ticket, x.entrant) > (d.last_ticket, d.last_entrant)
             ORDER BY x.ticket, x.entrant
             LIMIT p_chunk) AS e;
    v_count := coalesce(cardinality(v_users), 0);
    IF v_count > 0 THEN
        -- By ctid (a TID scan per row, half the cost of a primary-key
        -- probe): nothing else writes these rows while the step holds the
        -- coupon's lock (entries are frozen), so the versions just read are
        -- the ones to update.
        UPDATE raffle_entries AS e SET place = d.placed + u.ord
          FROM unnest(v_rows) WITH ORDINALITY AS u(row_id, ord)
         WHERE e.ctid = u.row_id;
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

-- coupon_state gains the raffle's fields (after the old ones: CREATE OR
-- REPLACE VIEW only appends). The seed shows once drawn_at is set; the
-- draw's counts once it is done (reads during the draw: docs/design.md).
CREATE OR REPLACE VIEW coupon_state AS
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

DROP TRIGGER coupons_record_change ON coupons;
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

CREATE OR REPLACE FUNCTION claim_many(p_coupon_name text, p_users text[], p_releases text[] DEFAULT '{}',
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

CREATE OR REPLACE FUNCTION claim_many_coupons(p_coupons text[], p_user_counts integer[],
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
BEGIN
    PERFORM 1 FROM coupons AS k WHERE k.name = ANY (p_coupons) ORDER BY k.id FOR UPDATE;
    v_now := clock_timestamp();
    SELECT coalesce(array_agg(p.ord::integer), '{}') INTO v_fast
      FROM unnest(p_coupons, p_user_counts) WITH ORDINALITY AS p(name, n, ord)
      JOIN coupons AS c ON c.name = p.name
     WHERE sale_refusal(c.starts_at, c.ends_at, c.active, v_now) IS NULL
       AND (c.holds_due_at IS NULL OR c.holds_due_at > v_now)
       AND c.remaining_amount >= p.n
       AND c.allocation = 'first_come'  -- a raffle's part is claim_many's (0021)
       AND p.ord <> ALL (p_release_parts);
    RETURN QUERY
        WITH fast AS (
            SELECT p.ord::integer AS part, c.id, c.name, c.remaining_amount,
                   v_now + make_interval(secs => c.hold_seconds) AS expires_at
              FROM unnest(p_coupons) WITH ORDINALITY AS p(name, ord)
              JOIN coupons AS c ON c.name = p.name
             WHERE p.ord = ANY (v_fast)
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
    FOR v_part IN 1 .. coalesce(cardinality(p_coupons), 0) LOOP
        CONTINUE WHEN v_part = ANY (v_fast);
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

CREATE OR REPLACE FUNCTION keep_claim_keys(p_scope text, p_users text[], p_keys text[], p_prints bytea[],
                                p_stored idempotency_keys[], r_coupon_id bigint,
                                r_claimed text[], r_holders text[], r_refusal text,
                                r_claimed_at timestamptz, r_expires_at timestamptz)
RETURNS TABLE (fresh bigint, outcomes text[], replayed boolean[],
               claimed_ats timestamptz[], expires_ats timestamptz[])
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH arrival AS (
        SELECT u.ord, u.key, u.print, s.key IS NOT NULL AS replayed,
               CASE WHEN s.key IS NOT NULL AND s.fingerprint <> u.print
                        THEN 'idempotency_key_reused'
                    WHEN s.key IS NOT NULL THEN s.outcome
                    WHEN r_coupon_id IS NULL THEN 'not_found'
                    WHEN g.user_id IS NOT NULL THEN 'claimed'
                    WHEN r_holders IS NULL OR h.user_id IS NOT NULL THEN 'already_claimed'
                    ELSE coalesce(r_refusal, 'sold_out') END AS outcome,
               CASE WHEN s.key IS NOT NULL THEN s.claimed_at
                    WHEN g.user_id IS NOT NULL OR r_refusal = 'entered'
                    THEN r_claimed_at END AS claimed_at,
               CASE WHEN s.key IS NOT NULL THEN s.expires_at
                    WHEN g.user_id IS NOT NULL OR r_refusal = 'entered'
                    THEN r_expires_at END AS expires_at
          FROM unnest(p_users, p_keys, p_prints) WITH ORDINALITY AS u(user_id, key, print, ord)
          LEFT JOIN unnest(p_stored) AS s ON s.key = u.key
          LEFT JOIN unnest(r_claimed) AS g(user_id) ON g.user_id = u.user_id
          LEFT JOIN unnest(r_holders) AS h(user_id) ON h.user_id = u.user_id
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

CREATE OR REPLACE FUNCTION claim_many_new_keys(p_coupon_name text, p_users text[], p_releases text[],
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

CREATE OR REPLACE FUNCTION sold_out_batch(p_coupon_name text, p_users text[])
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
           EXISTS (SELECT 1 FROM claims AS h
                    WHERE h.coupon_id = k.id AND h.user_id = u.user_id
                      AND (h.redeemed_at IS NOT NULL OR h.expires_at IS NULL
                           OR h.expires_at > now())),
           k.id,
           k.remaining,
           k.refusal
      FROM unnest(p_users) WITH ORDINALITY AS u(user_id, ord)
      LEFT JOIN k ON true
     ORDER BY u.ord
$$;

CREATE OR REPLACE FUNCTION change_coupon(p_name text, p_amount integer,
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

CREATE OR REPLACE FUNCTION expire_holds(p_coupons integer)
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
