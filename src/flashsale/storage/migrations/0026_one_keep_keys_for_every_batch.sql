-- One way to store a batch's Idempotency-Keys with their decisions (issue 21).
--
-- keep_claim_keys and keep_release_keys decided a one-coupon batch's keys
-- (claim_many_keyed) from claim_many's row, while claim_many_coupons_keyed
-- wrote the same arrival / INSERT / aggregate statements again, twice, for
-- a lane's batch of several coupons. Both now take the batch's decisions as
-- coupon_part_decision rows, numbered by part (claim_many_keyed's batch is
-- part 1), and each arrival's part: the one statement per kind serves both
-- wrappers. An arrival's grant, hold, release or redeem is found by a join
-- on (part, user) to the decisions' arrays unnested, as keep_claim_keys
-- joined them before, no longer by "user = ANY (array)" per arrival (a scan
-- of the part's array for each of its arrivals).
-- Measured side by side in one database (old and new functions, calls
-- alternating old-first and new-first, 8 rounds, median ms per call on the
-- 2-core bench machine): claim_many_keyed, 250 keyed users, 7.35 / 7.23;
-- claim_many_coupons_keyed, one part of 250 keyed users, 9.47 / 8.49 (the
-- ANY scans were quadratic in the part's size); 12 parts of 1 keyed user,
-- 1.59 / 1.57; 12 parts of 20, 9.87 / 9.93. flashsale bench --scenarios
-- hot_keyed,hot, 3 rounds each way, alternating: the keyed coupon's
-- claims/s are its 20,000 keys in 8 s on both sides (2,478-2,486; the rest
-- are 429s), its requests/s 12,961-19,694 before, 18,832-21,461 after.
-- Decisions, stored rows, locks and their order are unchanged: each kind's
-- keys still go in one INSERT in key order, after the coupons' row locks.

-- The old, one-coupon signatures: only claim_many_keyed called them.
DROP FUNCTION keep_claim_keys(text, text[], text[], bytea[], idempotency_keys[], bigint, text[],
                              text[], text, timestamptz, timestamptz);
DROP FUNCTION keep_release_keys(text, text[], text[], bytea[], idempotency_keys[], bigint, text[],
                                text[]);

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

CREATE OR REPLACE FUNCTION claim_many_keyed(p_coupon_name text, p_users text[], p_releases text[],
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

CREATE OR REPLACE FUNCTION claim_many_coupons_keyed(p_coupons text[], p_user_counts integer[],
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
