-- Releases ride in claim batches (issue 9's speed, and a release storm when
-- payments fail at the height of a sale).
--
-- DELETE /api/coupons/{name}/claims/{user} ran release_claim in a transaction
-- of its own, which takes the coupon's row lock and holds it through its
-- commit's WAL flush, while the hot coupon's claim batches wait behind it:
-- under `flashsale bench`, 500 releases/s cost the hot coupon about a fifth of
-- its claims/s. Now the claim engine queues a release in the coupon's claim
-- lane, and claim_many takes p_releases beside p_users: one transaction, one
-- lock, one flush for both.
--
-- In the batch, after the due holds are deleted and before anything is
-- decided: p_releases' live holds are deleted (recorded as released by
-- claims_return_stock), their units join the stock this batch grants, and a
-- released user may claim again in the same batch. released lists the users
-- whose hold went back; redeemed, those among p_releases whose claim is
-- redeemed (a redeemed claim cannot be released); any other user held no
-- live claim. A due hold among p_releases was deleted as expired just before:
-- that release finds no claim, as release_claim would.
--
-- expires_at is not re-checked in the DELETE: every unredeemed hold due at
-- v_now was deleted above, under the same lock, so what is left is live.
DROP FUNCTION claim_many(text, text[]);
-- Its one caller was the release route.
DROP FUNCTION release_claim(text, text);
CREATE FUNCTION claim_many(p_coupon_name text, p_users text[], p_releases text[] DEFAULT '{}')
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
    IF c.holds_due_at <= v_now THEN
        v_remaining := v_remaining + expire_coupon_holds(c.id, v_now);
    END IF;
    IF cardinality(p_releases) > 0 THEN
        -- Releases first, whatever the sale's state: their units are the
        -- batch's to claim. A hold that expired is gone already (above).
        PERFORM set_config('flashsale.end_reason', 'released', true);
        WITH gone AS (
            DELETE FROM claims AS h
             WHERE h.coupon_id = c.id AND h.user_id = ANY (p_releases)
               AND h.redeemed_at IS NULL
            RETURNING h.user_id
        )
        SELECT coalesce(array_agg(gone.user_id), '{}') INTO v_released FROM gone;
        PERFORM set_config('flashsale.end_reason', '', true);
        v_remaining := v_remaining + cardinality(v_released);
        SELECT coalesce(array_agg(h.user_id), '{}') INTO v_redeemed
          FROM claims AS h WHERE h.coupon_id = c.id AND h.user_id = ANY (p_releases);
    END IF;

    v_refusal := sale_refusal(c.starts_at, c.ends_at, c.active, v_now);
    IF v_refusal IS NOT NULL THEN
        SELECT coalesce(array_agg(h.user_id), '{}') INTO v_holders
          FROM claims AS h WHERE h.coupon_id = c.id AND h.user_id = ANY (p_users);
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
