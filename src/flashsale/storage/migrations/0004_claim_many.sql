-- claim_many replaces claim_batch (0003) on the claim path: half the work per
-- claim in PostgreSQL. The caller sends each user once, in arrival order (it
-- folds repeats of a user into that user's first arrival), and gets one row
-- back instead of one per claim:
--   coupon_id, remaining  NULL when there is no such coupon;
--   claimed               users granted a claim by this call, in order;
--   holders               users who held the coupon before this call, or NULL
--                         when every user fitted in the stock: then any user
--                         not in "claimed" was refused by the primary key,
--                         which means they already hold it.
--
-- As in 0003, the row lock is taken in a statement of its own, so the later
-- statements' snapshots include every claim committed by the batches we
-- waited for (READ COMMITTED re-reads only the locked row in a statement
-- that waited for a lock). The stock moves through the claims_take_stock
-- trigger, by exactly the rows inserted.
CREATE FUNCTION claim_many(p_coupon_name text, p_users text[])
RETURNS TABLE (coupon_id bigint, remaining integer, claimed text[], holders text[])
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_coupon_id bigint;
    v_remaining integer;
    v_claimed text[];
    v_holders text[];
BEGIN
    SELECT c.id, c.remaining_amount INTO v_coupon_id, v_remaining
      FROM coupons AS c WHERE c.name = p_coupon_name FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT NULL::bigint, NULL::integer, NULL::text[], NULL::text[];
        RETURN;
    END IF;

    IF v_remaining >= cardinality(p_users) THEN
        -- The common case in a sale: stock for everyone in the batch. The
        -- primary key sorts out holders; no probe of claims beforehand.
        WITH inserted AS (
            INSERT INTO claims (coupon_id, coupon_name, user_id)
            SELECT v_coupon_id, p_coupon_name, u.user_id
              FROM unnest(p_users) WITH ORDINALITY AS u(user_id, ord)
             ORDER BY u.ord
            ON CONFLICT DO NOTHING
            RETURNING user_id
        )
        SELECT coalesce(array_agg(inserted.user_id), '{}') INTO v_claimed FROM inserted;
    ELSE
        -- Scarce stock: holders must not take a unit from later arrivals, so
        -- find them first (one index probe each), then grant the rest in
        -- arrival order, as many as there is stock.
        SELECT coalesce(array_agg(h.user_id), '{}') INTO v_holders
          FROM claims AS h
         WHERE h.coupon_id = v_coupon_id AND h.user_id = ANY (p_users);
        WITH inserted AS (
            INSERT INTO claims (coupon_id, coupon_name, user_id)
            SELECT v_coupon_id, p_coupon_name, u.user_id
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
        SELECT v_coupon_id, v_remaining - cardinality(v_claimed), v_claimed, v_holders;
END
$$;

DROP FUNCTION claim_batch(text, text[]);
