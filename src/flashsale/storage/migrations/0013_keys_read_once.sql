-- claim_many_keyed reads a batch's stored keys once, by key (issue 10's cost).
--
-- 0011 read idempotency_keys twice per batch: the stored keys, then every
-- arrival's key again after inserting the fresh ones (batch_key_decisions,
-- a LEFT JOIN of the batch's keys to the table). PL/pgSQL caches a
-- statement's plan per session and, after five runs, keeps a generic one
-- (plan_cache_mode auto); planned while the table was small, that join
-- became a hash join over every key of the scope (Index Cond: scope = $4
-- only), so each batch read all keys ever stored: 13.7 million index tuples
-- for 43,000 keyed claims in eight seconds, 432 us of PostgreSQL CPU per
-- claim instead of 37. Now the only read of the table is one probe by
-- primary key per key (stored_keys), and every decision is computed from
-- what the batch holds: the
-- stored rows just read and claim_many's answer. The fresh keys' decisions
-- are the values inserted, so nothing needs reading back.
--
-- The behaviour is 0011's (see there: the coupon's row lock first, replays
-- leave the batch, FSK01 when another coupon's request holds a key); a kind
-- (claims, releases) without keys in the batch skips its statements, and
-- its decision arrays are NULL (the store reads NULL as "no keyed arrival").
DROP FUNCTION batch_key_decisions(text, text[], bytea[], text[]);
DROP FUNCTION stored_batch_keys(text, text[]);

-- The rows of p_scope stored under p_keys (NULLs ignored), an index probe
-- per key of idempotency_keys_pkey. Written as a lateral lookup by the whole
-- primary key, not as "scope = $1 AND key = ANY ($2)": PostgreSQL costs an
-- array of N keys as N index descents, so with statistics from when the
-- table was small (autovacuum analyzes it a minute or more later, and a
-- cached generic plan keeps them) the planner preferred one descent on scope
-- with key = ANY as a filter over every key of the scope, as 0011's join
-- did. An equality on every column of a unique index is at most one row
-- whatever the statistics say, so each probe stays one descent; LIMIT 1
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

-- Stores each fresh claim key with its decision and returns every arrival's
-- decision in the order of p_users (NULL where an arrival has no key), read
-- as the store reads claim_many's answer: granted; else a holder (every
-- ungranted user when the stock covered the batch: p_holders is NULL then);
-- else why the sale refused, or sold_out. fresh counts the keys inserted.
-- The joins are to the batch's own arrays (hash or nested loop over a few
-- hundred values), never to the table.
CREATE FUNCTION keep_claim_keys(p_scope text, p_users text[], p_keys text[], p_prints bytea[],
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
                    WHEN g.user_id IS NOT NULL THEN r_claimed_at END AS claimed_at,
               CASE WHEN s.key IS NOT NULL THEN s.expires_at
                    WHEN g.user_id IS NOT NULL THEN r_expires_at END AS expires_at
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

-- keep_claim_keys for releases: released, already_redeemed, claim_not_found.
CREATE FUNCTION keep_release_keys(p_scope text, p_releases text[], p_keys text[],
                                  p_prints bytea[], p_stored idempotency_keys[],
                                  r_coupon_id bigint, r_released text[], r_redeemed text[])
RETURNS TABLE (fresh bigint, outcomes text[], replayed boolean[])
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
                    WHEN d.user_id IS NOT NULL THEN 'released'
                    WHEN x.user_id IS NOT NULL THEN 'already_redeemed'
                    ELSE 'claim_not_found' END AS outcome
          FROM unnest(p_releases, p_keys, p_prints) WITH ORDINALITY AS u(user_id, key, print, ord)
          LEFT JOIN unnest(p_stored) AS s ON s.key = u.key
          LEFT JOIN unnest(r_released) AS d(user_id) ON d.user_id = u.user_id
          LEFT JOIN unnest(r_redeemed) AS x(user_id) ON x.user_id = u.user_id
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

CREATE OR REPLACE FUNCTION claim_many_keyed(p_coupon_name text, p_users text[], p_releases text[],
                                            p_claim_scope text, p_claim_keys text[],
                                            p_claim_prints bytea[], p_release_scope text,
                                            p_release_keys text[], p_release_prints bytea[])
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
                      unstored_arrivals(p_releases, p_release_keys, v_release_stored));
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
