-- A claim's link to its coupon is checked once per statement, in the stock
-- trigger, instead of once per row by a foreign key (the claim path's cost).
--
-- claims_coupon_fkey (0001) made PostgreSQL run its referential-integrity
-- trigger for every inserted claim: a SELECT ... FOR KEY SHARE of the coupon
-- row, per row (RI triggers are row-level; there is no statement-level form).
-- A claim batch inserts up to 500 claims of one coupon, so that was up to 500
-- lookups and row locks of a row the batch already holds FOR UPDATE. Measured
-- with pgbench, batches of 45 new claims, one client, PostgreSQL 15:
-- claim_many took 823-838 us per call with the constraint and 663-676 us
-- without (pg_stat_user_functions); under HTTP (wrk, two workers),
-- PostgreSQL CPU per claim went from 23.1-23.4 us to 19.3-19.7 us.
--
-- Every statement that inserts claims already updates each of their
-- coupons' rows once (claims_take_stock moves the stock), so that UPDATE is
-- the check now: it matches a coupon on both id and name, as the constraint
-- did, and the trigger raises foreign_key_violation (the SQLSTATE of the
-- constraint) when some inserted claim matched no coupon. Concurrency is as
-- safe as before: the UPDATE takes the coupon's row lock, stronger than FOR
-- KEY SHARE. A coupon deleted or renamed by a transaction that commits first
-- is not matched (READ COMMITTED re-checks the row it waited for, at its new
-- version or gone), so the insert fails; one deleted later waits for the
-- inserter's lock, and its own cascade (below) then sees the inserted claims.
--
-- What the constraint's actions did, triggers on coupons do now:
--   * ON DELETE CASCADE: coupons_delete_claims deletes a deleted coupon's
--     claims in the same statement (claims_return_stock finds no coupon row
--     to number events with, and records the claims as 'deleted', as the
--     cascade did);
--   * ON UPDATE CASCADE: coupons_follow_rename carries a new name to the
--     coupon's claims; a new id (UPDATE ... SET id = DEFAULT) is refused while
--     the coupon has claims (the cascade would have hit claims_forbid_update);
--   * TRUNCATE coupons no longer fails for the reference: coupons_truncate_claims
--     truncates claims with it (TRUNCATE ... CASCADE's effect);
--   * a claim's own coupon_name can only change to its coupon's current name
--     (claims_forbid_update, now also on coupon_name).

ALTER TABLE claims DROP CONSTRAINT claims_coupon_fkey;
-- The constraint's target; nothing else reads it.
ALTER TABLE coupons DROP CONSTRAINT coupons_id_name_key;

CREATE OR REPLACE FUNCTION claims_take_stock() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_events bigint;
BEGIN
    WITH n AS (
        SELECT coupon_id, coupon_name, count(*) AS taken, min(expires_at) AS first_expiry
          FROM new_claims GROUP BY coupon_id, coupon_name
    ), moved AS (
        UPDATE coupons AS c
           SET remaining_amount = c.remaining_amount - n.taken,
               holds_due_at = least(c.holds_due_at, n.first_expiry),
               event_seq = c.event_seq + n.taken,
               event_xid = greatest(c.event_xid, pg_current_xact_id())
          FROM n
         WHERE c.id = n.coupon_id AND c.name = n.coupon_name
        RETURNING c.id, c.name, c.event_seq - n.taken AS base, c.event_xid AS xid
    )
    INSERT INTO events (xid, coupon_id, coupon_name, seq, type, user_id, at)
    SELECT m.xid, k.coupon_id, k.coupon_name,
           m.base + row_number() OVER (PARTITION BY k.coupon_id ORDER BY k.id),
           'claimed', k.user_id, k.claimed_at
      FROM new_claims AS k
      JOIN moved AS m ON m.id = k.coupon_id AND m.name = k.coupon_name;
    -- One event per claim whose coupon was found and moved: fewer means a
    -- claim names no coupon (or one deleted or renamed meanwhile).
    GET DIAGNOSTICS v_events = ROW_COUNT;
    IF v_events < (SELECT count(*) FROM new_claims) THEN
        RAISE EXCEPTION 'a claim names no coupon with its coupon_id and coupon_name'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION coupons_delete_claims() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM claims AS h USING old_coupons AS o WHERE h.coupon_id = o.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER coupons_delete_claims
    AFTER DELETE ON coupons
    REFERENCING OLD TABLE AS old_coupons
    FOR EACH STATEMENT EXECUTE FUNCTION coupons_delete_claims();

CREATE FUNCTION coupons_follow_rename() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id <> OLD.id AND EXISTS (SELECT 1 FROM claims AS h WHERE h.coupon_id = OLD.id) THEN
        RAISE EXCEPTION 'coupon % has claims: its id cannot change', OLD.name
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF NEW.name <> OLD.name THEN
        UPDATE claims SET coupon_name = NEW.name WHERE coupon_id = NEW.id;
    END IF;
    RETURN NULL;
END
$$;

-- UPDATE OF: only statements that name id or name in their SET list (the
-- claim path's updates of the stock never do).
CREATE TRIGGER coupons_follow_rename
    AFTER UPDATE OF id, name ON coupons
    FOR EACH ROW EXECUTE FUNCTION coupons_follow_rename();

CREATE FUNCTION coupons_truncate_claims() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE claims;
    RETURN NULL;
END
$$;

CREATE TRIGGER coupons_truncate_claims
    AFTER TRUNCATE ON coupons
    FOR EACH STATEMENT EXECUTE FUNCTION coupons_truncate_claims();

-- A claim's coupon_name follows its coupon's (coupons_follow_rename) and
-- nothing else: moving a claim to another coupon or user would dodge the
-- stock triggers.
CREATE OR REPLACE FUNCTION claims_forbid_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.coupon_id <> OLD.coupon_id OR NEW.user_id <> OLD.user_id THEN
        RAISE EXCEPTION 'claims are immutable: delete and insert instead'
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF NEW.coupon_name <> OLD.coupon_name
       AND NOT EXISTS (SELECT 1 FROM coupons AS c
                        WHERE c.id = NEW.coupon_id AND c.name = NEW.coupon_name) THEN
        RAISE EXCEPTION 'a claim''s coupon_name is its coupon''s name'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER claims_forbid_update ON claims;
CREATE TRIGGER claims_forbid_update
    BEFORE UPDATE OF coupon_id, user_id, coupon_name ON claims
    FOR EACH ROW EXECUTE FUNCTION claims_forbid_update();
