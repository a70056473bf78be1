-- Due holds are deleted by a claim batch only when it needs them gone
-- (issue 9's speed with holds expiring all the time).
--
-- 0007 made claim_many delete its coupon's due holds whenever any was due.
-- With holds expiring every few milliseconds on the hot coupon, that was
-- nearly every batch: a DELETE, the stock trigger (claim_history and the
-- events of 0009) and the recomputed holds_due_at, four statements per
-- batch for a handful of rows. Now a batch deletes them
--   * when the stock is short of the batch (their units are needed now),
--   * when a user of the batch was refused by the primary key while a hold is
--     due (that user may be the holder of a due hold: swept, and tried again),
--   * and otherwise once the coupon's first due hold is a second old: the
--     hot coupon's holds go in one sweep about every second, well inside the
--     contract's two seconds (the sweepers take coupons no batch holds, with
--     SKIP LOCKED, every 0.5 s).
-- Until then a due hold is not live for anything the batch decides: a
-- release of it finds no claim, a closed sale does not count its user as a
-- holder, and reads count it as returned (coupon_state), as before.
CREATE OR REPLACE FUNCTION claim_many(p_coupon_name text, p_users text[], p_releases text[] DEFAULT '{}')
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
        PERFORM set_config('flashsale.end_reason', 'released', true);
        WITH gone AS (
            DELETE FROM claims AS h
             WHERE h.coupon_id = c.id AND h.user_id = ANY (p_releases)
               AND h.redeemed_at IS NULL AND (h.expires_at IS NULL OR h.expires_at > v_now)
            RETURNING h.user_id
        )
        SELECT coalesce(array_agg(gone.user_id), '{}') INTO v_released FROM gone;
        PERFORM set_config('flashsale.end_reason', '', true);
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
