-- Idempotency keys (issue 10): a client's retry of a state-changing request
-- gets the first attempt's answer back instead of running again.
--
-- A key row is written by the transaction that makes the request's effect,
-- and only by it, so the two commit or vanish together: an attempt whose
-- answer was lost (a 503 after the request deadline, a dropped connection)
-- leaves a key row exactly when its effect committed, and its retry replays
-- that effect's answer or, if nothing committed, runs afresh.
--
-- Keys are scoped by route (scope = method and path template, e.g.
-- 'PATCH /api/coupons/{name}'); the fingerprint (SHA-256 of the method, the
-- raw path and the body bytes) tells a retry from another request that
-- reuses the key (422 idempotency_key_reused).
--
-- The answer is kept in one of two shapes:
--   * status + body: the exact bytes of the first answer (every route but
--     the claim; the handler renders them inside the writing transaction);
--   * outcome + claimed_at + expires_at: the claim's decision, written by
--     claim_many_keyed in the batch that decides it; the claim endpoint renders
--     the first answer and every replay from these same values.
CREATE TABLE idempotency_keys (
    scope       text        NOT NULL,
    key         text        NOT NULL,
    fingerprint bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    status      smallint,
    body        bytea,
    outcome     text,
    claimed_at  timestamptz,
    expires_at  timestamptz,
    PRIMARY KEY (scope, key),
    CONSTRAINT idempotency_keys_key_length CHECK (octet_length(key) BETWEEN 1 AND 255)
);

-- The purge walks the oldest keys first, a small batch at a time.
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- Takes key p_key of p_scope for this transaction, or returns what an
-- earlier request stored under it. The INSERT's unique check waits while
-- another transaction has inserted the same key and not yet finished
-- (PostgreSQL's speculative insertion waits for the inserting transaction):
-- a concurrent retry so waits for the first attempt's outcome, bounded by
-- lock_timeout. If that attempt commits, ON CONFLICT DO NOTHING inserts
-- nothing and the SELECT, a later statement with a fresh snapshot in READ
-- COMMITTED, sees its committed row; if it rolls back, this INSERT goes
-- through and the retry runs. fresh is true when the key was taken.
CREATE FUNCTION take_idempotency_key(p_scope text, p_key text, p_fingerprint bytea)
RETURNS TABLE (fresh boolean, fingerprint bytea, status smallint, body bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    INSERT INTO idempotency_keys (scope, key, fingerprint)
    VALUES (p_scope, p_key, p_fingerprint)
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        RETURN QUERY SELECT true, NULL::bytea, NULL::smallint, NULL::bytea;
        RETURN;
    END IF;
    RETURN QUERY
        SELECT false, k.fingerprint, k.status, k.body
          FROM idempotency_keys AS k
         WHERE k.scope = p_scope AND k.key = p_key;
END
$$;

-- Which of a batch's keys (p_keys, NULL where an arrival has none) an
-- earlier request stored. Called under the coupon's row lock, so every
-- earlier batch of the coupon has committed: this plain read sees its keys.
CREATE FUNCTION stored_batch_keys(p_scope text, p_keys text[])
RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(k.key), '{}')
      FROM idempotency_keys AS k
     WHERE k.scope = p_scope AND k.key = ANY (p_keys)
$$;

-- Each keyed arrival's stored decision, in the order of p_keys (NULL where
-- an arrival has no key): the outcome (idempotency_key_reused when the key
-- came with another request), its times, and whether an earlier request
-- stored it (a replay). Read after the batch stored its own keys, so fresh
-- keys and replays are answered from the same rows.
CREATE FUNCTION batch_key_decisions(p_scope text, p_keys text[], p_prints bytea[],
                                    p_stored text[])
RETURNS TABLE (outcomes text[], replayed boolean[], claimed_ats timestamptz[],
               expires_ats timestamptz[])
LANGUAGE sql STABLE AS $$
    SELECT array_agg(CASE WHEN k.key IS NULL THEN NULL
                          WHEN k.fingerprint <> u.print THEN 'idempotency_key_reused'
                          ELSE k.outcome END ORDER BY u.ord),
           array_agg(u.key IS NOT NULL AND u.key = ANY (p_stored) ORDER BY u.ord),
           array_agg(k.claimed_at ORDER BY u.ord),
           array_agg(k.expires_at ORDER BY u.ord)
      FROM unnest(p_keys, p_prints) WITH ORDINALITY AS u(key, print, ord)
      LEFT JOIN idempotency_keys AS k ON k.scope = p_scope AND k.key = u.key
$$;

-- claim_many with Idempotency-Keys: keys for claims (p_claim_keys and
-- p_claim_prints parallel to p_users, NULL where an arrival has none) and for
-- releases (parallel to p_releases). A wrapper, so that claim_many itself
-- (0008, and whatever later migrations make it write) stays the one decider:
-- batches without keys call claim_many directly and pay nothing for keys.
-- The engine sends a keyed user once per batch (a keyed user has no other
-- arrival of its kind in the batch), so a key's decision is its user's.
--
-- 1. The coupon's row lock first: batches of one coupon run in turn, so the
--    keys an earlier batch stored are committed and visible to the read in
--    2 (READ COMMITTED: each statement sees what committed before it began).
--    A retry of a claim still being decided by another worker's batch so
--    waits for that batch, for free, and then replays its outcome.
-- 2. Arrivals whose key is stored leave the batch (a replay changes nothing).
-- 3. claim_many decides the rest; it locks the row again (free: this
--    transaction holds it).
-- 4. One INSERT ... SELECT from unnest per kind stores each fresh key with
--    its decision, in this transaction: a key exists exactly when its
--    decision committed. Only a request for another coupon (so with another
--    fingerprint) can hold one of these keys meanwhile; the INSERT waits for
--    it (the unique index's check waits for the inserting transaction), and
--    if it committed, this batch raises 'FSK01' and rolls back whole; the
--    store sends it again, and then step 2 finds the key (a 422 for that
--    arrival). Inserting in key order keeps two such batches from deadlocking.
CREATE FUNCTION claim_many_keyed(p_coupon_name text, p_users text[], p_releases text[],
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
    v_claim_stored text[];
    v_release_stored text[];
    v_users text[];
    v_releases text[];
    v_fresh integer;
    v_stored integer;
    r record;
    v_claims record;
    v_releases_decided record;
BEGIN
    PERFORM 1 FROM coupons AS k WHERE k.name = p_coupon_name FOR UPDATE;
    v_claim_stored := stored_batch_keys(p_claim_scope, p_claim_keys);
    v_release_stored := stored_batch_keys(p_release_scope, p_release_keys);
    v_users := ARRAY(SELECT u.user_id
                       FROM unnest(p_users, p_claim_keys) WITH ORDINALITY AS u(user_id, key, ord)
                      WHERE u.user_id IS NOT NULL
                        AND (u.key IS NULL OR u.key <> ALL (v_claim_stored))
                      ORDER BY u.ord);
    v_releases := ARRAY(SELECT u.user_id
                          FROM unnest(p_releases, p_release_keys)
                               WITH ORDINALITY AS u(user_id, key, ord)
                         WHERE u.user_id IS NOT NULL
                           AND (u.key IS NULL OR u.key <> ALL (v_release_stored))
                         ORDER BY u.ord);
    SELECT * INTO r FROM claim_many(p_coupon_name, v_users, v_releases);

    -- Each fresh key's decision, as the store reads claim_many's answer:
    -- granted; else a holder (every ungranted user when the stock covered the
    -- batch: holders is NULL then); else why the sale refused, or sold_out.
    WITH fresh AS (
        INSERT INTO idempotency_keys (scope, key, fingerprint, outcome, claimed_at, expires_at)
        SELECT p_claim_scope, u.key, u.print,
               CASE WHEN r.coupon_id IS NULL THEN 'not_found'
                    WHEN u.user_id = ANY (r.claimed) THEN 'claimed'
                    WHEN r.holders IS NULL OR u.user_id = ANY (r.holders) THEN 'already_claimed'
                    ELSE coalesce(r.refusal, 'sold_out') END,
               CASE WHEN u.user_id = ANY (r.claimed) THEN r.claimed_at END,
               CASE WHEN u.user_id = ANY (r.claimed) THEN r.expires_at END
          FROM unnest(p_users, p_claim_keys, p_claim_prints) AS u(user_id, key, print)
         WHERE u.key IS NOT NULL AND u.key <> ALL (v_claim_stored)
         ORDER BY u.key
        ON CONFLICT DO NOTHING
        RETURNING 1
    )
    SELECT count(*) INTO v_fresh FROM fresh;
    WITH fresh AS (
        INSERT INTO idempotency_keys (scope, key, fingerprint, outcome)
        SELECT p_release_scope, u.key, u.print,
               CASE WHEN r.coupon_id IS NULL THEN 'not_found'
                    WHEN u.user_id = ANY (r.released) THEN 'released'
                    WHEN u.user_id = ANY (r.redeemed) THEN 'already_redeemed'
                    ELSE 'claim_not_found' END
          FROM unnest(p_releases, p_release_keys, p_release_prints) AS u(user_id, key, print)
         WHERE u.key IS NOT NULL AND u.key <> ALL (v_release_stored)
         ORDER BY u.key
        ON CONFLICT DO NOTHING
        RETURNING 1
    )
    SELECT v_fresh + count(*) INTO v_fresh FROM fresh;
    v_stored := cardinality(v_claim_stored) + cardinality(v_release_stored);
    IF v_fresh + v_stored < cardinality(array_remove(p_claim_keys, NULL))
                            + cardinality(array_remove(p_release_keys, NULL)) THEN
        RAISE EXCEPTION 'an idempotency key of this batch was taken by another request'
            USING ERRCODE = 'FSK01';
    END IF;

    SELECT * INTO v_claims
      FROM batch_key_decisions(p_claim_scope, p_claim_keys, p_claim_prints, v_claim_stored);
    SELECT * INTO v_releases_decided
      FROM batch_key_decisions(p_release_scope, p_release_keys, p_release_prints,
                               v_release_stored);
    RETURN QUERY
        SELECT r.coupon_id, r.remaining, r.claimed, r.holders, r.refusal, r.claimed_at,
               r.expires_at, r.released, r.redeemed,
               v_claims.outcomes, v_claims.replayed, v_claims.claimed_ats,
               v_claims.expires_ats, v_releases_decided.outcomes,
               v_releases_decided.replayed;
END
$$;
