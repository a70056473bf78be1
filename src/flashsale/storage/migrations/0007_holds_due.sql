-- Each coupon says when its first hold can be due, so nothing probes claims
-- for due holds unless one can be (issue 9's speed).
--
-- 0006 asked claims for the coupon's due holds on every claim batch, every
-- sold-out read and every coupon read. Which plan that probe got depended on
-- the statistics: with every seeded claim's expires_at NULL, PostgreSQL 15
-- planned the EXISTS inside claim_many as a sequential scan of claims (it
-- estimates an inequality on a parameter at a third of the rows and expects
-- an early match), and later as a walk of all the coupon's claims through
-- claims_coupon_order_idx. Measured under `flashsale bench`: 1,474 seq scans
-- reading 73 million rows in 8 s on the hot coupon, PostgreSQL CPU per claim
-- 54 us against 16 us before 0006.
--
-- coupons.holds_due_at is a lower bound of the earliest expires_at among the
-- coupon's unredeemed holds, NULL when it has none:
--   * every statement that inserts claims, or changes their expires_at,
--     lowers it in the statement-level trigger that already updates the
--     coupon row (least() ignores NULLs), whoever writes;
--   * a delete or a redeem only removes holds, so the bound stays a bound;
--   * expire_coupon_holds, which runs under the coupon's row lock, sets it to
--     the exact earliest expiry of what is left.
-- Code that holds the row reads it: when it is NULL or in the future no hold
-- is due and claims is not read at all. The probe, when it runs, reads the
-- coupon's range of claims_coupon_holds_idx, which both its conditions match.

ALTER TABLE coupons ADD COLUMN holds_due_at timestamptz;

UPDATE coupons AS c
   SET holds_due_at = (SELECT min(h.expires_at) FROM claims AS h
                        WHERE h.coupon_id = c.id AND h.redeemed_at IS NULL
                          AND h.expires_at IS NOT NULL);

DROP INDEX claims_holds_due_idx;
-- One coupon's unredeemed holds, soonest expiry first: the due-hold deletes
-- and the recomputation of holds_due_at. One index per hold, as before.
CREATE INDEX claims_coupon_holds_idx ON claims (coupon_id, expires_at)
    WHERE redeemed_at IS NULL AND expires_at IS NOT NULL;
-- No index on coupons.holds_due_at: an indexed column that changes makes
-- the update non-HOT (PostgreSQL's heap-only tuples need every indexed column
-- unchanged), and the hot coupon's row is updated by every claim batch; the
-- sweeper reads the coupons table whole instead (one row per coupon).

-- Stock taken, and the first expiry lowered, in the one UPDATE per statement.
CREATE OR REPLACE FUNCTION claims_take_stock() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE coupons AS c
       SET remaining_amount = c.remaining_amount - n.taken,
           holds_due_at = least(c.holds_due_at, n.first_expiry)
      FROM (SELECT coupon_id, count(*) AS taken, min(expires_at) AS first_expiry
              FROM new_claims GROUP BY coupon_id) AS n
     WHERE c.id = n.coupon_id;
    RETURN NULL;
END
$$;

-- An operator's UPDATE claims SET expires_at = ... (the bench does it) can
-- bring a hold's end forward: the bound follows.
CREATE FUNCTION claims_follow_expiry() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE coupons AS c
       SET holds_due_at = least(c.holds_due_at, n.first_expiry)
      FROM (SELECT coupon_id, min(expires_at) AS first_expiry
              FROM new_claims WHERE redeemed_at IS NULL
             GROUP BY coupon_id) AS n
     WHERE c.id = n.coupon_id AND n.first_expiry IS NOT NULL
       AND (c.holds_due_at IS NULL OR n.first_expiry < c.holds_due_at);
    RETURN NULL;
END
$$;

CREATE TRIGGER claims_follow_expiry
    AFTER UPDATE ON claims
    REFERENCING NEW TABLE AS new_claims
    FOR EACH STATEMENT EXECUTE FUNCTION claims_follow_expiry();

-- Deletes coupon p_coupon_id's unredeemed holds due at p_at, recorded as
-- expired (their units go back through claims_return_stock), and sets the
-- coupon's holds_due_at to the first expiry left. Callers hold the coupon's
-- row lock, so deletes of one coupon's claims always lock the coupon first,
-- then claims (no deadlock between sweepers, claims and releases).
CREATE OR REPLACE FUNCTION expire_coupon_holds(p_coupon_id bigint, p_at timestamptz)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_count integer;
BEGIN
    PERFORM set_config('flashsale.end_reason', 'expired', true);
    DELETE FROM claims AS h
     WHERE h.coupon_id = p_coupon_id AND h.redeemed_at IS NULL
       AND h.expires_at IS NOT NULL AND h.expires_at <= p_at;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    PERFORM set_config('flashsale.end_reason', '', true);
    UPDATE coupons AS c
       SET holds_due_at = (SELECT h.expires_at FROM claims AS h
                            WHERE h.coupon_id = p_coupon_id AND h.redeemed_at IS NULL
                              AND h.expires_at IS NOT NULL
                            ORDER BY h.expires_at LIMIT 1)
     WHERE c.id = p_coupon_id;
    RETURN v_count;
END
$$;

-- The sweeper's one statement (every worker of every instance runs it every
-- ~0.5 s): up to p_coupons coupons whose first hold is due, each taken with
-- FOR UPDATE SKIP LOCKED. A coupon another sweeper holds is being swept; one
-- a claim batch holds is swept by that batch (claim_many sweeps first). The
-- DELETE re-checks its rows after any lock wait, so a hold redeemed meanwhile
-- stays, and a hold already deleted is not deleted again: each unit comes
-- back once (claim_history_claim_key would refuse a second ending anyway).
-- The coupon's holds_due_at is re-read after the lock: a sweeper that waited
-- for nothing (SKIP LOCKED never waits) still sees the row's latest version.
CREATE OR REPLACE FUNCTION expire_holds(p_coupons integer)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_coupon bigint;
    v_total integer := 0;
BEGIN
    FOR v_coupon IN
        SELECT c.id FROM coupons AS c
         WHERE c.holds_due_at <= now()
         ORDER BY c.holds_due_at
         LIMIT p_coupons
         FOR UPDATE SKIP LOCKED
    LOOP
        v_total := v_total + expire_coupon_holds(v_coupon, clock_timestamp());
    END LOOP;
    RETURN v_total;
END
$$;

-- Coupons as clients see them: a hold past its expiry is gone even before
-- the sweep deletes it (its unit counts as remaining), and the status is
-- decided by PostgreSQL's clock. The count of due holds is gated on the
-- coupon's own holds_due_at (a one-time filter: claims is not read when no
-- hold can be due).
CREATE OR REPLACE VIEW coupon_state AS
SELECT c.id, c.name, c.amount,
       c.remaining_amount + due.holds AS remaining_amount,
       coupon_status(c.starts_at, c.ends_at, c.active, c.remaining_amount + due.holds, now())
           AS status,
       c.starts_at, c.ends_at, c.hold_seconds, c.active,
       (SELECT count(*)::integer FROM claims AS r
         WHERE r.coupon_id = c.id AND r.redeemed_at IS NOT NULL) AS redeemed
  FROM coupons AS c
 CROSS JOIN LATERAL (SELECT count(*)::integer AS holds FROM claims AS d
                      WHERE c.holds_due_at <= now()
                        AND d.coupon_id = c.id AND d.redeemed_at IS NULL
                        AND d.expires_at IS NOT NULL AND d.expires_at <= now()) AS due;

-- claim_many, as in 0006, but the due holds are looked for only when the
-- coupon row (already locked) says one can be due.
CREATE OR REPLACE FUNCTION claim_many(p_coupon_name text, p_users text[])
RETURNS TABLE (coupon_id bigint, remaining integer, claimed text[], holders text[],
               refusal text, claimed_at timestamptz, expires_at timestamptz)
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
BEGIN
    SELECT * INTO c FROM coupons AS k WHERE k.name = p_coupon_name FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT NULL::bigint, NULL::integer, NULL::text[], NULL::text[],
                            NULL::text, NULL::timestamptz, NULL::timestamptz;
        RETURN;
    END IF;
    v_now := clock_timestamp();
    v_remaining := c.remaining_amount;
    IF c.holds_due_at <= v_now THEN
        v_remaining := v_remaining + expire_coupon_holds(c.id, v_now);
    END IF;

    v_refusal := sale_refusal(c.starts_at, c.ends_at, c.active, v_now);
    IF v_refusal IS NOT NULL THEN
        SELECT coalesce(array_agg(h.user_id), '{}') INTO v_holders
          FROM claims AS h WHERE h.coupon_id = c.id AND h.user_id = ANY (p_users);
        RETURN QUERY SELECT c.id, v_remaining, '{}'::text[], v_holders, v_refusal,
                            NULL::timestamptz, NULL::timestamptz;
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
               v_now, v_expires;
END
$$;

-- sold_out_batch, as in 0006, with the due-hold count gated the same way.
CREATE OR REPLACE FUNCTION sold_out_batch(p_coupon_name text, p_users text[])
RETURNS TABLE (arrival integer, holds boolean, coupon_id bigint, remaining integer,
               refusal text)
LANGUAGE sql STABLE AS $$
    WITH k AS (
        SELECT c.id,
               c.remaining_amount
                   + (SELECT count(*)::integer FROM claims AS d
                       WHERE c.holds_due_at <= now()
                         AND d.coupon_id = c.id AND d.redeemed_at IS NULL
                         AND d.expires_at IS NOT NULL AND d.expires_at <= now()) AS remaining,
               sale_refusal(c.starts_at, c.ends_at, c.active, now()) AS refusal
          FROM coupons AS c WHERE c.name = p_coupon_name
    )
    SELECT u.ord::integer,
           EXISTS (SELECT 1 FROM claims AS h
                    WHERE h.coupon_id = k.id AND h.user_id = u.user_id
                      AND (h.redeemed_at IS NOT NULL OR h.expires_at IS NULL
                           OR h.expires_at > now())),
           k.id,
           k.remaining,
           k.refusal
      FROM unnest(p_users) WITH ORDINALITY AS u(user_id, ord)
      LEFT JOIN k ON true
     ORDER BY u.ord
$$;
