-- A keyed claim batch assumes its keys are new (issue 10's cost).
--
-- Clients send a key so that a retry is safe; retries are rare, so nearly
-- every key a batch carries is new. claim_many_keyed (0013) pays for the
-- rare case on every batch: a probe of idempotency_keys per key before
-- claim_many, then an INSERT ... ON CONFLICT DO NOTHING (a speculative
-- insertion: one more index descent per key, and a token to confirm) and a
-- count to learn whether a key was taken meanwhile. Measured on PostgreSQL 15
-- (batches of 50 new keyed claims, one session, backend CPU): 43-55 us per
-- claim against 25-29 us without keys, and 35-43 us this way.
--
-- claim_many_new_keys is the optimistic batch, for claims whose keys are all
-- believed new (the store sends batches with release keys, and batches after
-- a replay, to claim_many_keyed as before):
--   1. claim_many decides every arrival, under the coupon's row lock;
--   2. a plain INSERT stores each key with its decision, in key order (two
--      batches inserting the same keys wait in the same order: no deadlock).
--      A key that is already stored, or that another transaction inserted and
--      then commits, fails the unique check of idempotency_keys_pkey (the
--      check waits for an inserting transaction that is still in progress,
--      as ON CONFLICT does), and the whole batch rolls back: nothing of it
--      happened. The store then sends the same batch to claim_many_keyed,
--      whose probe finds the stored key and replays it (or answers
--      idempotency_key_reused);
--   3. each keyed arrival's decision comes back as stored (claim_outcomes, in
--      the order of p_users, NULL where an arrival has no key); none is a
--      replay, and a granted one has the batch's claimed_at and expires_at.
CREATE FUNCTION claim_many_new_keys(p_coupon_name text, p_users text[], p_releases text[],
                                    p_scope text, p_keys text[], p_prints bytea[])
RETURNS TABLE (coupon_id bigint, remaining integer, claimed text[], holders text[],
               refusal text, claimed_at timestamptz, expires_at timestamptz,
               released text[], redeemed text[], claim_outcomes text[])
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    r record;
    v_outcomes text[];
BEGIN
    SELECT * INTO r FROM claim_many(p_coupon_name, p_users, p_releases);
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
