-- The claims -> coupons foreign key again (0001's claims_coupon_fkey), in
-- place of 0015's triggers.
--
-- 0015 replaced the constraint by a per-statement check in the stock trigger
-- and by triggers on coupons that did the constraint's cascades; it saved
-- about 4 us of PostgreSQL CPU per claim. What it cost the database's other
-- users was larger: TRUNCATE claims, coupons (either order, CASCADE or not)
-- failed with 55006 "cannot TRUNCATE claims because it is being used by
-- active queries in this session" (coupons_truncate_claims truncated claims
-- again inside the outer TRUNCATE), and every tool that reads constraints
-- (\d claims, pg_dump's ordering, ORMs, schema browsers) no longer saw the
-- link. With the constraint, PostgreSQL itself does what the triggers did:
--   * ON DELETE CASCADE: a deleted coupon's claims go with it (the stock
--     trigger records them in claim_history as 'deleted', as before);
--   * ON UPDATE CASCADE: a renamed coupon's claims take the new name
--     (claims_forbid_update still refuses a changed coupon_id or user_id, so
--     a coupon with claims keeps its id);
--   * TRUNCATE coupons must name claims too or say CASCADE (PostgreSQL's
--     rule for a referenced table), and then both go in one statement.
-- The stock trigger matches coupons on id again (the constraint's row-level
-- check runs before it, at the end of the same statement, and refuses a
-- claim whose (coupon_id, coupon_name) names no coupon with 23503).
--
-- Added on a live database without a long lock. ADD CONSTRAINT ... NOT VALID
-- takes SHARE ROW EXCLUSIVE on claims and coupons (writers wait) but reads
-- no row, so it is over at once; from then on every new or changed claim is
-- checked. VALIDATE CONSTRAINT reads every claim, and takes only SHARE
-- UPDATE EXCLUSIVE on claims and ROW SHARE on coupons, which block no insert,
-- update or delete (PostgreSQL's ALTER TABLE documentation). It must run in
-- a transaction of its own: a lock is held until its transaction ends, so
-- validating inside this migration's transaction would keep the SHARE ROW
-- EXCLUSIVE lock for the whole scan. The migrator (migrations.py) therefore
-- validates every NOT VALID constraint of the schema after the migrations
-- commit, each in its own transaction, on every start until none is left
-- (a start that dies in between leaves the constraint enforced for new rows,
-- and the next start validates it). The unique key on coupons (id, name),
-- the constraint's target, is built here under SHARE on coupons: one row
-- per coupon, a short scan; it changes no HOT update of the claim path,
-- which never writes id or name.

DROP TRIGGER coupons_truncate_claims ON coupons;
DROP FUNCTION coupons_truncate_claims();
DROP TRIGGER coupons_follow_rename ON coupons;
DROP FUNCTION coupons_follow_rename();
DROP TRIGGER coupons_delete_claims ON coupons;
DROP FUNCTION coupons_delete_claims();

ALTER TABLE coupons ADD CONSTRAINT coupons_id_name_key UNIQUE (id, name);

ALTER TABLE claims ADD CONSTRAINT claims_coupon_fkey FOREIGN KEY (coupon_id, coupon_name)
    REFERENCES coupons (id, name) ON DELETE CASCADE ON UPDATE CASCADE NOT VALID;

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

-- A claim's coupon_name follows its coupon's through the constraint's
-- ON UPDATE CASCADE, which sets both key columns (coupon_id to its old
-- value): compared by value, only a real move is refused. The constraint
-- itself refuses a coupon_name that is not its coupon's.
CREATE OR REPLACE FUNCTION claims_forbid_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.coupon_id <> OLD.coupon_id OR NEW.user_id <> OLD.user_id THEN
        RAISE EXCEPTION 'claims are immutable: delete and insert instead'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER claims_forbid_update ON claims;
CREATE TRIGGER claims_forbid_update
    BEFORE UPDATE OF coupon_id, user_id ON claims
    FOR EACH ROW EXECUTE FUNCTION claims_forbid_update();
