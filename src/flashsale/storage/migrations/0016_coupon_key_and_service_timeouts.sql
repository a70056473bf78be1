-- Two changes for the database's other users (issue 22).
--
-- 1. The claims -> coupons foreign key again (0001's claims_coupon_fkey), in
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
-- validates each constraint a migration added NOT VALID after the migrations
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

-- 2. The service's timeouts are its sessions' own, no longer its role's.
--
-- 0005 stored statement_timeout, lock_timeout and
-- idle_in_transaction_session_timeout as the serving role's defaults in this
-- database (ALTER ROLE ... IN DATABASE ... SET), so every session of that
-- role there had them, an operator's psql as the database owner included: a
-- bulk import or an index build by hand was cancelled after 5 s. Now:
--   * the service stores its configured values in service_timeouts (one
--     row; store_service_timeouts at start-up), and applies them to its own
--     sessions: to each connection of its pools when it opens it (a
--     session-level set_config: storage/pool.py), and PgBouncer applies them
--     to each server connection it opens (connect_query = apply_service_timeouts()
--     in deploy/pgbouncer/pgbouncer.ini), so a transaction-mode pooler's
--     connections carry them whichever client a transaction comes from;
--   * an operator's session gets PostgreSQL's defaults (or whatever the
--     operator set for the role);
--   * the upgrade: the values 0005 stored are reset here for the migrating
--     role, and by store_service_timeouts for the serving role (a role may
--     always reset its own settings; another role's needs CREATEROLE).
-- docs/database.md has the whole design.

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

DROP FUNCTION store_session_defaults(integer, integer, integer);
SELECT reset_role_timeouts();
