-- The schema as the migrations leave it today, in one place to read: what
-- migrations/0001..N build step by step, without the history. It is not
-- applied by the service (migrations are); a test builds a database from
-- this file and compares it with a migrated one, so a migration that is not
-- reflected here fails CI. Queries run at request time are in queries.sql.

-- Tables --------------------------------------------------------------

-- Coupons and their claims. The invariants live here, not only in code:
--   * stock is bounded: 0 <= remaining_amount <= amount (CHECKs below);
--   * one claim per user per coupon (primary key of claims);
--   * amount - remaining_amount = number of claims, because only the
--     statement-level triggers below move the stock, by exactly the number
--     of claim rows each statement inserted or deleted.
CREATE TABLE coupons (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text        NOT NULL,
    amount           integer     NOT NULL,
    remaining_amount integer     NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT coupons_name_key UNIQUE (name),
    -- Target of the claims foreign key, which carries the name along.
    CONSTRAINT coupons_id_name_key UNIQUE (id, name),
    CONSTRAINT coupons_name_format CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
    CONSTRAINT coupons_amount_positive CHECK (amount BETWEEN 1 AND 1000000000),
    CONSTRAINT coupons_remaining_not_negative CHECK (remaining_amount >= 0),
    CONSTRAINT coupons_remaining_within_amount CHECK (remaining_amount <= amount)
);

CREATE TABLE claims (
    -- Claim order: identities are handed out in insertion order.
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    coupon_id   bigint      NOT NULL,
    coupon_name text        NOT NULL,
    user_id     text        NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT claims_pkey PRIMARY KEY (coupon_id, user_id),
    -- The original design keys claims by coupon name; we keep the name and
    -- tie it to the coupon's identity so the two can never disagree.
    CONSTRAINT claims_coupon_fkey FOREIGN KEY (coupon_id, coupon_name)
        REFERENCES coupons (id, name) ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT claims_user_id_format CHECK (
        char_length(user_id) BETWEEN 1 AND 128 AND user_id !~ '[[:cntrl:]]'
    )
);

-- Claimers of one coupon in claim order, without a sort.
CREATE UNIQUE INDEX claims_coupon_order_idx ON claims (coupon_id, id);

-- Stock follows claims ---------------------------------------------------

-- The stock counter follows the claims table, whoever writes it (the claim
-- engine, an operator fixing data by hand, a cascade from a deleted coupon).
-- Statement-level triggers with transition tables cost one UPDATE per
-- statement, so a batch of 500 claims moves the counter once. If a writer
-- inserts more claims than there is stock, coupons_remaining_not_negative
-- fails the whole statement: an oversell becomes an error, never a row.
CREATE FUNCTION claims_take_stock() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE coupons AS c
       SET remaining_amount = c.remaining_amount - n.taken
      FROM (SELECT coupon_id, count(*) AS taken FROM new_claims GROUP BY coupon_id) AS n
     WHERE c.id = n.coupon_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION claims_return_stock() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE coupons AS c
       SET remaining_amount = c.remaining_amount + o.returned
      FROM (SELECT coupon_id, count(*) AS returned FROM old_claims GROUP BY coupon_id) AS o
     WHERE c.id = o.coupon_id;
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

-- Moving a claim to another coupon or user would dodge both triggers.
CREATE FUNCTION claims_forbid_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'claims are immutable: delete and insert instead'
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER claims_forbid_update
    BEFORE UPDATE OF coupon_id, user_id ON claims
    FOR EACH ROW EXECUTE FUNCTION claims_forbid_update();

-- The claim path's functions -----------------------------------------------

-- claim_many: one round trip decides a batch of distinct users' claims on
-- one coupon (store.claim_many). The caller sends each user once, in arrival
-- order (it folds repeats of a user into that user's first arrival), and
-- gets one row back:
--   coupon_id, remaining  NULL when there is no such coupon;
--   claimed               users granted a claim by this call, in order;
--   holders               users who held the coupon before this call, or NULL
--                         when every user fitted in the stock: then any user
--                         not in "claimed" was refused by the primary key,
--                         which means they already hold it.
--
-- Why a function of several statements: in READ COMMITTED a statement's
-- snapshot is taken when it starts. If the row lock had to wait for another
-- process's batch, a single statement would re-read the coupon row but still
-- see the claims table as it was before that batch committed. Here the lock
-- is taken in a statement of its own, so every later statement's snapshot
-- includes everything committed before we got the lock. The stock moves
-- through the claims_take_stock trigger, by exactly the rows inserted.
CREATE FUNCTION claim_many(p_coupon_name text, p_users text[])
RETURNS TABLE (coupon_id bigint, remaining integer, claimed text[], holders text[])
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_coupon_id bigint;
    v_remaining integer;
    v_claimed text[];
    v_holders text[];
BEGIN
    SELECT c.id, c.remaining_amount INTO v_coupon_id, v_remaining
      FROM coupons AS c WHERE c.name = p_coupon_name FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT NULL::bigint, NULL::integer, NULL::text[], NULL::text[];
        RETURN;
    END IF;

    IF v_remaining >= cardinality(p_users) THEN
        -- The common case in a sale: stock for everyone in the batch. The
        -- primary key sorts out holders; no probe of claims beforehand.
        WITH inserted AS (
            INSERT INTO claims (coupon_id, coupon_name, user_id)
            SELECT v_coupon_id, p_coupon_name, u.user_id
              FROM unnest(p_users) WITH ORDINALITY AS u(user_id, ord)
             ORDER BY u.ord
            ON CONFLICT DO NOTHING
            RETURNING user_id
        )
        SELECT coalesce(array_agg(inserted.user_id), '{}') INTO v_claimed FROM inserted;
    ELSE
        -- Scarce stock: holders must not take a unit from later arrivals, so
        -- find them first (one index probe each), then grant the rest in
        -- arrival order, as many as there is stock.
        SELECT coalesce(array_agg(h.user_id), '{}') INTO v_holders
          FROM claims AS h
         WHERE h.coupon_id = v_coupon_id AND h.user_id = ANY (p_users);
        WITH inserted AS (
            INSERT INTO claims (coupon_id, coupon_name, user_id)
            SELECT v_coupon_id, p_coupon_name, u.user_id
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
        SELECT v_coupon_id, v_remaining - cardinality(v_claimed), v_claimed, v_holders;
END
$$;

-- sold_out_batch (store.sold_out_batch): sold-out answers without the lock. Once a coupon's committed stock is zero
-- it cannot grow again through the service, and every claim that took stock is
-- committed and visible: a plain snapshot read decides who holds it. Returns
-- the coupon's identity and stock so the caller can tell its hint is stale
-- (coupon recreated under the same name, or stock returned by an operator).
CREATE FUNCTION sold_out_batch(p_coupon_name text, p_users text[])
RETURNS TABLE (arrival integer, holds boolean, coupon_id bigint, remaining integer)
LANGUAGE sql STABLE AS $$
    SELECT u.ord::integer,
           EXISTS (SELECT 1 FROM claims AS h WHERE h.coupon_id = c.id AND h.user_id = u.user_id),
           c.id,
           c.remaining_amount
      FROM unnest(p_users) WITH ORDINALITY AS u(user_id, ord)
      LEFT JOIN coupons AS c ON c.name = p_coupon_name
     ORDER BY u.ord
$$;

-- The service's timeouts as its role's defaults ----------------------------------

-- The service's timeouts (statement_timeout, lock_timeout,
-- idle_in_transaction_session_timeout) become its role's defaults in this
-- database, the one way to set them that a transaction-mode pooler passes
-- through: PgBouncer refuses them as startup parameters, and a session SET
-- would stay on a server connection that other clients then use. PostgreSQL
-- applies pg_db_role_setting when a backend starts, so every server
-- connection a pooler opens has them, and RESET ALL / DISCARD ALL return to
-- them. They cost nothing per query.
--
-- Start-up calls this with the configured values (milliseconds); it writes
-- only what changed and returns whether it did. It runs as the caller
-- (SECURITY INVOKER): ordinary roles may set their own defaults, and the
-- role that serves is the one whose sessions need them.
CREATE FUNCTION store_session_defaults(
    p_statement_timeout_ms integer,
    p_lock_timeout_ms integer,
    p_idle_in_transaction_timeout_ms integer
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_wanted text[] := ARRAY[
        'idle_in_transaction_session_timeout=' || p_idle_in_transaction_timeout_ms,
        'lock_timeout=' || p_lock_timeout_ms,
        'statement_timeout=' || p_statement_timeout_ms];
    v_stored text[];
BEGIN
    -- Instances starting together would update the same pg_db_role_setting
    -- row at once ("tuple concurrently updated"): one at a time, until COMMIT.
    PERFORM pg_advisory_xact_lock(x'666C617374'::bigint);  -- "flast"
    SELECT array_agg(setting ORDER BY setting) INTO v_stored
      FROM pg_db_role_setting AS s, unnest(s.setconfig) AS setting
     WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND s.setrole = (SELECT oid FROM pg_roles WHERE rolname = current_user)
       AND split_part(setting, '=', 1) IN
           ('idle_in_transaction_session_timeout', 'lock_timeout', 'statement_timeout');
    -- This backend started before the defaults were stored; a pooler keeps it
    -- and hands it to other clients, so it takes them on too (a session-level
    -- setting that persists after COMMIT, with the same values as everyone's).
    PERFORM set_config('statement_timeout', p_statement_timeout_ms::text, false);
    PERFORM set_config('lock_timeout', p_lock_timeout_ms::text, false);
    PERFORM set_config('idle_in_transaction_session_timeout',
                       p_idle_in_transaction_timeout_ms::text, false);
    IF v_stored IS NOT DISTINCT FROM v_wanted THEN
        RETURN false;
    END IF;
    EXECUTE format('ALTER ROLE %I IN DATABASE %I SET statement_timeout = %s',
                   current_user, current_database(), p_statement_timeout_ms);
    EXECUTE format('ALTER ROLE %I IN DATABASE %I SET lock_timeout = %s',
                   current_user, current_database(), p_lock_timeout_ms);
    EXECUTE format('ALTER ROLE %I IN DATABASE %I SET idle_in_transaction_session_timeout = %s',
                   current_user, current_database(), p_idle_in_transaction_timeout_ms);
    RETURN true;
END;
$$;
