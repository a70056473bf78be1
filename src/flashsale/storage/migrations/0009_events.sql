-- The events feed: every change of a coupon or of its claims writes an event
-- row in the same transaction as the change, numbered per coupon.
--
-- seq is the coupon's own sequence number, gapless and in commit order:
-- coupons.event_seq is advanced by the same UPDATE of the coupon row that
-- already moves its stock (claims_take_stock, claims_return_stock), or by the
-- row's own UPDATE (coupon_changed), and every writer holds the coupon's row
-- lock from that UPDATE (or from its SELECT ... FOR UPDATE in claim_many,
-- which releases too since 0008, redeem_claim, change_coupon, expire_holds)
-- until it commits. Two transactions therefore number one coupon's events
-- one after the other, the second starting from the first's committed event_seq
-- (PostgreSQL re-reads a row it waited for at its newest version: READ
-- COMMITTED's EvalPlanQual for UPDATE, the locked version for FOR UPDATE). A
-- rollback undoes event_seq with its events: no gap.
--
-- xid is the global feed's order: the writing transaction's id
-- (pg_current_xact_id(), 64-bit xid8: it never wraps around), raised to the
-- coupon's previous event's xid when that is higher (coupons.event_xid, kept
-- in the same UPDATE as event_seq). The feed is ordered by (xid, id) and
-- shows only xid < pg_snapshot_xmin(pg_current_snapshot()); queries.sql
-- events_page says why that never skips. Why raise it: a transaction's xid
-- is assigned at its first write, which is not always after the coupon's
-- lock (a row lock that waits for an updated row can assign it, then wait
-- again for the next updater; measured: 44 of 100 concurrent releases of
-- one coupon), so a later seq could carry an older xid. Raised,
-- one coupon's xids never go down with seq, and equal ones are ordered by
-- id (identities come from a sequence, CACHE 1: handed out in time order,
-- and the later writer inserts after the earlier one committed). Raising
-- keeps xid >= the writer's own xid, all the no-skip argument needs.

ALTER TABLE coupons ADD COLUMN event_seq bigint NOT NULL DEFAULT 0;
-- The xid of the coupon's last event (events.xid); NULL before the first.
ALTER TABLE coupons ADD COLUMN event_xid xid8;

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
    CONSTRAINT events_type CHECK (type IN ('coupon_created', 'coupon_changed', 'claimed',
                                           'released', 'expired', 'redeemed'))
);
-- The global feed's keyset. Only these two indexes: every claim writes a row.
CREATE UNIQUE INDEX events_feed_idx ON events (xid, id);

-- Claims taken: stock and event_seq move in one UPDATE of each coupon row,
-- then one INSERT writes every claim's event, numbered in claim order.
CREATE OR REPLACE FUNCTION claims_take_stock() RETURNS trigger
LANGUAGE plpgsql AS $$
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
    INSERT INTO events (xid, coupon_id, coupon_name, seq, type, user_id, at)
    SELECT m.xid, k.coupon_id, k.coupon_name,
           m.base + row_number() OVER (PARTITION BY k.coupon_id ORDER BY k.id),
           'claimed', k.user_id, k.claimed_at
      FROM new_claims AS k
      JOIN moved AS m ON m.id = k.coupon_id;
    RETURN NULL;
END
$$;

-- Claims ended: 'expired' from the sweeps (flashsale.end_reason), otherwise
-- 'released' with the reason in data, so an operator's DELETE ('deleted')
-- is told apart from a release. A coupon deleted with its claims (the
-- cascade) has no row left to number events with: none are written.
CREATE OR REPLACE FUNCTION claims_return_stock() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_reason text := coalesce(nullif(current_setting('flashsale.end_reason', true), ''),
                              'deleted');
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
        RETURNING c.id, c.event_seq - o.returned AS base, c.event_xid AS xid
    )
    INSERT INTO events (xid, coupon_id, coupon_name, seq, type, user_id, at, data)
    SELECT m.xid, k.coupon_id, k.coupon_name,
           m.base + row_number() OVER (PARTITION BY k.coupon_id ORDER BY k.id),
           CASE WHEN v_reason = 'expired' THEN 'expired' ELSE 'released' END,
           k.user_id, clock_timestamp(),
           CASE WHEN v_reason = 'expired' THEN '{}'::jsonb
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
    INSERT INTO events (xid, coupon_id, coupon_name, seq, type, user_id, at)
    SELECT m.xid, r.coupon_id, r.coupon_name,
           m.base + row_number() OVER (PARTITION BY r.coupon_id ORDER BY r.id),
           'redeemed', r.user_id, r.redeemed_at
      FROM r
      JOIN moved AS m ON m.id = r.coupon_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER claims_record_redeems
    AFTER UPDATE ON claims
    REFERENCING OLD TABLE AS old_claims NEW TABLE AS new_claims
    FOR EACH STATEMENT EXECUTE FUNCTION claims_record_redeems();

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
    NEW.event_seq := NEW.event_seq + 1;
    NEW.event_xid := greatest(NEW.event_xid, pg_current_xact_id());
    INSERT INTO events (xid, coupon_id, coupon_name, seq, type, at, data)
    VALUES (NEW.event_xid, NEW.id, NEW.name, NEW.event_seq, 'coupon_changed',
            clock_timestamp(), v_data);
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
          OR NEW.hold_seconds IS DISTINCT FROM OLD.hold_seconds)
    EXECUTE FUNCTION coupons_record_change();

-- The redeem takes the coupon's row lock first, like release_claim: its event
-- is numbered on that row (claims_record_redeems), and every writer must lock
-- the coupon before its claims (no deadlock with releases and sweepers).
CREATE OR REPLACE FUNCTION redeem_claim(p_name text, p_user text)
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
