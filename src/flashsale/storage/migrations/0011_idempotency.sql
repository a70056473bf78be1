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

-- Takes a claim batch's keys (p_keys parallel to p_prints, NULL where an
-- arrival has none) for this transaction: one INSERT for all of them, in key
-- order so that two batches taking overlapping keys cannot deadlock. Returns
-- the keys taken; the others were stored by an earlier request (the INSERT
-- waited for any still in flight, as in take_idempotency_key).
CREATE FUNCTION take_batch_keys(p_scope text, p_keys text[], p_prints bytea[])
RETURNS text[]
LANGUAGE sql AS $$
    WITH taken AS (
        INSERT INTO idempotency_keys (scope, key, fingerprint)
        SELECT p_scope, u.key, u.print
          FROM unnest(p_keys, p_prints) AS u(key, print)
         WHERE u.key IS NOT NULL
         ORDER BY u.key
        ON CONFLICT DO NOTHING
        RETURNING key
    )
    SELECT coalesce(array_agg(taken.key), '{}') FROM taken
$$;

-- Each keyed arrival's stored decision, in the order of p_keys (NULL where
-- an arrival has no key): the outcome (idempotency_key_reused when the key
-- came with another request), its times, and whether it was stored before
-- this batch (a replay). Read after this batch stored its own decisions, so
-- fresh keys and replays are answered from the same rows.
CREATE FUNCTION batch_key_decisions(p_scope text, p_keys text[], p_prints bytea[],
                                    p_taken text[])
RETURNS TABLE (outcomes text[], replayed boolean[], claimed_ats timestamptz[],
               expires_ats timestamptz[])
LANGUAGE sql STABLE AS $$
    SELECT array_agg(CASE WHEN k.key IS NULL THEN NULL
                          WHEN k.fingerprint <> u.print THEN 'idempotency_key_reused'
                          ELSE k.outcome END ORDER BY u.ord),
           array_agg(u.key IS NOT NULL AND u.key <> ALL (p_taken) ORDER BY u.ord),
           array_agg(k.claimed_at ORDER BY u.ord),
           array_agg(k.expires_at ORDER BY u.ord)
      FROM unnest(p_keys, p_prints) WITH ORDINALITY AS u(key, print, ord)
      LEFT JOIN idempotency_keys AS k ON k.scope = p_scope AND k.key = u.key
$$;

-- claim_many, as in 0008, with Idempotency-Keys for claims (p_claim_keys and
-- p_claim_prints parallel to p_users) and for releases (parallel to
-- p_releases). The engine sends a keyed user once per batch (a user with a
-- key has no other arrival of its kind in the batch).
--
-- Under the coupon's row lock, before anything is decided, the batch takes
-- its keys: an arrival whose key was stored by an earlier request is left
-- out of the decision (a replay changes nothing) and answered from its
-- stored row. Taking keys after the lock, not before, matters: a batch that
-- held a key while waiting for the lock could deadlock with the batch
-- holding the lock and waiting for that key (a retry in another worker).
-- After the decision, one UPDATE stores each fresh key's outcome (and its
-- claim's times) in this transaction: the key exists exactly when its
-- decision committed.
DROP FUNCTION claim_many(text, text[], text[]);
CREATE FUNCTION claim_many(p_coupon_name text, p_users text[], p_releases text[] DEFAULT '{}',
                           p_claim_scope text DEFAULT NULL,
                           p_claim_keys text[] DEFAULT '{}',
                           p_claim_prints bytea[] DEFAULT '{}',
                           p_release_scope text DEFAULT NULL,
                           p_release_keys text[] DEFAULT '{}',
                           p_release_prints bytea[] DEFAULT '{}')
RETURNS TABLE (coupon_id bigint, remaining integer, claimed text[], holders text[],
               refusal text, claimed_at timestamptz, expires_at timestamptz,
               released text[], redeemed text[],
               claim_outcomes text[], claim_replayed boolean[],
               claim_claimed_ats timestamptz[], claim_expires_ats timestamptz[],
               release_outcomes text[], release_replayed boolean[])
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    c coupons%ROWTYPE;
    v_keyed boolean := cardinality(p_claim_keys) > 0 OR cardinality(p_release_keys) > 0;
    v_users text[] := p_users;
    v_releases text[] := p_releases;
    v_claim_taken text[] := '{}';
    v_release_taken text[] := '{}';
    v_now timestamptz;
    v_expires timestamptz;
    v_remaining integer;
    v_refusal text;
    v_claimed text[] := '{}';
    v_holders text[];
    v_released text[] := '{}';
    v_redeemed text[] := '{}';
    v_claim_outcomes text[];
    v_claim_replayed boolean[];
    v_claim_claimed_ats timestamptz[];
    v_claim_expires_ats timestamptz[];
    v_release_outcomes text[];
    v_release_replayed boolean[];
BEGIN
    SELECT * INTO c FROM coupons AS k WHERE k.name = p_coupon_name FOR UPDATE;
    IF v_keyed THEN
        v_claim_taken := take_batch_keys(p_claim_scope, p_claim_keys, p_claim_prints);
        v_release_taken := take_batch_keys(p_release_scope, p_release_keys, p_release_prints);
        -- Replays leave the batch: only unkeyed arrivals and fresh keys are decided.
        v_users := ARRAY(SELECT u.user_id
                           FROM unnest(p_users, p_claim_keys) WITH ORDINALITY AS u(user_id, key, ord)
                          WHERE u.key IS NULL OR u.key = ANY (v_claim_taken)
                          ORDER BY u.ord);
        v_releases := ARRAY(SELECT u.user_id
                              FROM unnest(p_releases, p_release_keys)
                                   WITH ORDINALITY AS u(user_id, key, ord)
                             WHERE u.key IS NULL OR u.key = ANY (v_release_taken)
                             ORDER BY u.ord);
    END IF;
    IF c.id IS NOT NULL THEN
        v_now := clock_timestamp();
        v_remaining := c.remaining_amount;
        IF c.holds_due_at <= v_now THEN
            v_remaining := v_remaining + expire_coupon_holds(c.id, v_now);
        END IF;
        IF cardinality(v_releases) > 0 THEN
            -- Releases first, whatever the sale's state: their units are the
            -- batch's to claim. A hold that expired is gone already (above).
            PERFORM set_config('flashsale.end_reason', 'released', true);
            WITH gone AS (
                DELETE FROM claims AS h
                 WHERE h.coupon_id = c.id AND h.user_id = ANY (v_releases)
                   AND h.redeemed_at IS NULL
                RETURNING h.user_id
            )
            SELECT coalesce(array_agg(gone.user_id), '{}') INTO v_released FROM gone;
            PERFORM set_config('flashsale.end_reason', '', true);
            v_remaining := v_remaining + cardinality(v_released);
            SELECT coalesce(array_agg(h.user_id), '{}') INTO v_redeemed
              FROM claims AS h WHERE h.coupon_id = c.id AND h.user_id = ANY (v_releases);
        END IF;

        v_refusal := sale_refusal(c.starts_at, c.ends_at, c.active, v_now);
        IF v_refusal IS NOT NULL THEN
            SELECT coalesce(array_agg(h.user_id), '{}') INTO v_holders
              FROM claims AS h WHERE h.coupon_id = c.id AND h.user_id = ANY (v_users);
            v_now := NULL;
        ELSE
            v_expires := v_now + make_interval(secs => c.hold_seconds);
            IF v_remaining >= cardinality(v_users) THEN
                -- Stock for everyone in the batch: the primary key sorts out holders.
                WITH inserted AS (
                    INSERT INTO claims (coupon_id, coupon_name, user_id, claimed_at, expires_at)
                    SELECT c.id, p_coupon_name, u.user_id, v_now, v_expires
                      FROM unnest(v_users) WITH ORDINALITY AS u(user_id, ord)
                     ORDER BY u.ord
                    ON CONFLICT DO NOTHING
                    RETURNING user_id
                )
                SELECT coalesce(array_agg(inserted.user_id), '{}') INTO v_claimed FROM inserted;
            ELSE
                -- Scarce stock: holders must not take a unit from later arrivals.
                SELECT coalesce(array_agg(h.user_id), '{}') INTO v_holders
                  FROM claims AS h WHERE h.coupon_id = c.id AND h.user_id = ANY (v_users);
                WITH inserted AS (
                    INSERT INTO claims (coupon_id, coupon_name, user_id, claimed_at, expires_at)
                    SELECT c.id, p_coupon_name, u.user_id, v_now, v_expires
                      FROM unnest(v_users) WITH ORDINALITY AS u(user_id, ord)
                     WHERE u.user_id <> ALL (v_holders)
                     ORDER BY u.ord
                     LIMIT v_remaining
                    ON CONFLICT DO NOTHING
                    RETURNING user_id
                )
                SELECT coalesce(array_agg(inserted.user_id), '{}') INTO v_claimed FROM inserted;
            END IF;
            v_remaining := v_remaining - cardinality(v_claimed);
        END IF;
    END IF;

    IF v_keyed THEN
        -- Each fresh key's decision, as the store reads the batch's answer:
        -- granted; else a holder (every ungranted user when the stock covered
        -- the batch, v_holders NULL); else why the sale refused, or sold_out.
        UPDATE idempotency_keys AS k
           SET outcome = CASE WHEN c.id IS NULL THEN 'not_found'
                              WHEN u.user_id = ANY (v_claimed) THEN 'claimed'
                              WHEN v_holders IS NULL OR u.user_id = ANY (v_holders)
                                  THEN 'already_claimed'
                              ELSE coalesce(v_refusal, 'sold_out') END,
               claimed_at = CASE WHEN u.user_id = ANY (v_claimed) THEN v_now END,
               expires_at = CASE WHEN u.user_id = ANY (v_claimed) THEN v_expires END
          FROM unnest(p_users, p_claim_keys) AS u(user_id, key)
         WHERE k.scope = p_claim_scope AND k.key = u.key AND u.key = ANY (v_claim_taken);
        UPDATE idempotency_keys AS k
           SET outcome = CASE WHEN c.id IS NULL THEN 'not_found'
                              WHEN u.user_id = ANY (v_released) THEN 'released'
                              WHEN u.user_id = ANY (v_redeemed) THEN 'already_redeemed'
                              ELSE 'claim_not_found' END
          FROM unnest(p_releases, p_release_keys) AS u(user_id, key)
         WHERE k.scope = p_release_scope AND k.key = u.key AND u.key = ANY (v_release_taken);
        SELECT d.outcomes, d.replayed, d.claimed_ats, d.expires_ats
          INTO v_claim_outcomes, v_claim_replayed, v_claim_claimed_ats, v_claim_expires_ats
          FROM batch_key_decisions(p_claim_scope, p_claim_keys, p_claim_prints,
                                   v_claim_taken) AS d;
        SELECT d.outcomes, d.replayed INTO v_release_outcomes, v_release_replayed
          FROM batch_key_decisions(p_release_scope, p_release_keys, p_release_prints,
                                   v_release_taken) AS d;
    END IF;

    RETURN QUERY
        SELECT c.id, v_remaining, CASE WHEN c.id IS NOT NULL THEN v_claimed END, v_holders,
               v_refusal, v_now, CASE WHEN v_now IS NOT NULL THEN v_expires END,
               CASE WHEN c.id IS NOT NULL THEN v_released END,
               CASE WHEN c.id IS NOT NULL THEN v_redeemed END,
               v_claim_outcomes, v_claim_replayed, v_claim_claimed_ats,
               v_claim_expires_ats, v_release_outcomes, v_release_replayed;
END
$$;
