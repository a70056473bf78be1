-- Who released it (issue 24): a release's event names its caller, as an
-- admin change's does (data.actor beside data.reason). Releases from many
-- callers are decided in one statement (a coupon's claim batch: claim_many
-- and its wrappers), so a transaction-wide setting (act_as) cannot name each:
-- every decider takes p_release_actors, who released which user (a JSON
-- object, user id -> actor), and claim_many hands it to claims_return_stock
-- through a transaction-local setting around its DELETE. A batch without
-- releases passes nothing and reads nothing. The sweepers' deletes (reason
-- 'expired') set no actors: an expiry names nobody. New signatures: the old
-- functions are dropped (a plpgsql body is not a dependency, so the wrappers
-- that call claim_many need no cascade) and created again.
DROP FUNCTION claim_many_coupons(text[], integer[], integer[], text[], integer[], text[]);
DROP FUNCTION claim_many_new_keys(text, text[], text[], text, text[], bytea[]);
DROP FUNCTION claim_many_keyed(text, text[], text[], text, text[], bytea[], text, text[], bytea[]);
DROP FUNCTION claim_many(text, text[], text[]);

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
    r record;
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
    SELECT * INTO r
      FROM claim_many(p_coupon_name,
                      unstored_arrivals(p_users, p_claim_keys, v_claim_stored),
                      unstored_arrivals(p_releases, p_release_keys, v_release_stored),
                      p_release_actors);
    IF v_keys > 0 THEN
        SELECT * INTO v_fresh, v_outcomes, v_replayed, v_claimed_ats, v_expires_ats
          FROM keep_claim_keys(p_claim_scope, p_users, p_claim_keys, p_claim_prints,
                               v_claim_stored, r.coupon_id, r.claimed, r.holders, r.refusal,
                               r.claimed_at, r.expires_at);
    END IF;
    IF v_release_keys > 0 THEN
        SELECT * INTO v_released_fresh, v_release_outcomes, v_release_replayed
          FROM keep_release_keys(p_release_scope, p_releases, p_release_keys,
                                 p_release_prints, v_release_stored, r.coupon_id,
                                 r.released, r.redeemed);
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
               CASE WHEN a.outcome = 'claimed' THEN r.claimed_at END,
               CASE WHEN a.outcome = 'claimed' THEN r.expires_at END
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
BEGIN
    PERFORM 1 FROM coupons AS k WHERE k.name = ANY (p_coupons) ORDER BY k.id FOR UPDATE;
    v_now := clock_timestamp();
    SELECT coalesce(array_agg(p.ord::integer), '{}') INTO v_fast
      FROM unnest(p_coupons, p_user_counts) WITH ORDINALITY AS p(name, n, ord)
      JOIN coupons AS c ON c.name = p.name
     WHERE sale_refusal(c.starts_at, c.ends_at, c.active, v_now) IS NULL
       AND (c.holds_due_at IS NULL OR c.holds_due_at > v_now)
       AND c.remaining_amount >= p.n
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

CREATE OR REPLACE FUNCTION claims_return_stock() RETURNS trigger
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
