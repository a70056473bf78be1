-- Keyed parts in the lane's batch (issue 23): a lane's batch across coupons
-- sent its parts with Idempotency-Keys beside it, one claim_many_keyed call
-- per keyed coupon: one more round trip, transaction and WAL flush each.
-- claim_many_coupons_keyed decides every part of the batch, keyed or not, in
-- one call: the keys probed after the coupons' locks, the unstored arrivals
-- decided by claim_many_coupons, each kind's fresh keys stored in one INSERT
-- in key order (the lock order of claim_many_keyed).

-- coupon_part_decision: one part's row of claim_many_coupons, kept between
-- the statements of claim_many_coupons_keyed (its keys are decided from it).
CREATE TYPE coupon_part_decision AS (
    part integer, coupon_id bigint, remaining integer, claimed text[], holders text[],
    refusal text, claimed_at timestamptz, expires_at timestamptz,
    released text[], redeemed text[]
);

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
-- 4. One INSERT per kind stores each fresh key with its decision, read from
--    its part's row as keep_claim_keys and keep_release_keys read claim_many's.
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
        WITH arrival AS (
            SELECT u.ord, u.key, u.print, s.key IS NOT NULL AS replayed,
                   CASE WHEN s.key IS NOT NULL AND s.fingerprint <> u.print
                            THEN 'idempotency_key_reused'
                        WHEN s.key IS NOT NULL THEN s.outcome
                        WHEN d.coupon_id IS NULL THEN 'not_found'
                        WHEN u.user_id = ANY (d.claimed) THEN 'claimed'
                        WHEN d.holders IS NULL OR u.user_id = ANY (d.holders)
                            THEN 'already_claimed'
                        ELSE coalesce(d.refusal, 'sold_out') END AS outcome,
                   CASE WHEN s.key IS NOT NULL THEN s.claimed_at
                        WHEN u.user_id = ANY (d.claimed) OR d.refusal = 'entered'
                        THEN d.claimed_at END AS claimed_at,
                   CASE WHEN s.key IS NOT NULL THEN s.expires_at
                        WHEN u.user_id = ANY (d.claimed) OR d.refusal = 'entered'
                        THEN d.expires_at END AS expires_at
              FROM unnest(p_user_parts, p_users, p_claim_keys, p_claim_prints)
                   WITH ORDINALITY AS u(part, user_id, key, print, ord)
              JOIN unnest(v_decided) AS d ON d.part = u.part
              LEFT JOIN unnest(v_claim_stored) AS s ON s.key = u.key
        ), inserted AS (
            INSERT INTO idempotency_keys (scope, key, fingerprint, outcome, claimed_at, expires_at)
            SELECT p_claim_scope, a.key, a.print, a.outcome, a.claimed_at, a.expires_at
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
          INTO v_fresh, v_outcomes, v_replayed, v_claimed_ats, v_expires_ats
          FROM arrival AS a;
    END IF;
    IF v_release_keys > 0 THEN
        WITH arrival AS (
            SELECT u.ord, u.key, u.print, s.key IS NOT NULL AS replayed,
                   CASE WHEN s.key IS NOT NULL AND s.fingerprint <> u.print
                            THEN 'idempotency_key_reused'
                        WHEN s.key IS NOT NULL THEN s.outcome
                        WHEN d.coupon_id IS NULL THEN 'not_found'
                        WHEN u.user_id = ANY (d.released) THEN 'released'
                        WHEN u.user_id = ANY (d.redeemed) THEN 'already_redeemed'
                        ELSE 'claim_not_found' END AS outcome
              FROM unnest(p_release_parts, p_releases, p_release_keys, p_release_prints)
                   WITH ORDINALITY AS u(part, user_id, key, print, ord)
              JOIN unnest(v_decided) AS d ON d.part = u.part
              LEFT JOIN unnest(v_release_stored) AS s ON s.key = u.key
        ), inserted AS (
            INSERT INTO idempotency_keys (scope, key, fingerprint, outcome)
            SELECT p_release_scope, a.key, a.print, a.outcome
              FROM arrival AS a
             WHERE a.key IS NOT NULL AND NOT a.replayed
             ORDER BY a.key
            ON CONFLICT DO NOTHING
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM inserted),
               array_agg(CASE WHEN a.key IS NOT NULL THEN a.outcome END ORDER BY a.ord),
               array_agg(a.replayed ORDER BY a.ord)
          INTO v_released_fresh, v_release_outcomes, v_release_replayed
          FROM arrival AS a;
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
