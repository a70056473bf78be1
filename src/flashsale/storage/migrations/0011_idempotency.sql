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
--     claim_many in the batch that decides it; the claim endpoint renders
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
