-- One round trip decides a whole batch of claims for one coupon.
--
-- p_users is in arrival order and may repeat a user. Each input position gets
-- one outcome: 'claimed', 'already_claimed', 'sold_out' or 'not_found'.
-- Stock goes to the earliest arrivals; a user who already holds the coupon is
-- told so even when it is sold out.
--
-- Why a function and several statements: in READ COMMITTED a statement's
-- snapshot is taken when it starts. If the row lock below had to wait for
-- another process's batch, a single statement would re-read the coupon row but
-- still see the claims table as it was before that batch committed. Here the
-- lock is taken first and every later statement gets a fresh snapshot, which
-- includes everything committed before we got the lock.
CREATE FUNCTION claim_batch(p_coupon_name text, p_users text[])
RETURNS TABLE (arrival integer, outcome text, coupon_id bigint, remaining integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_coupon_id bigint;
    v_remaining integer;
    v_claimed text[];
BEGIN
    -- Serialises batches for this coupon across processes and instances.
    SELECT c.id, c.remaining_amount INTO v_coupon_id, v_remaining
      FROM coupons AS c WHERE c.name = p_coupon_name FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY
            SELECT u.ord::integer, 'not_found'::text, NULL::bigint, NULL::integer
              FROM unnest(p_users) WITH ORDINALITY AS u(user_id, ord);
        RETURN;
    END IF;

    -- First arrival of each user who does not hold the coupon yet, earliest
    -- first, as many as there is stock. ON CONFLICT is a second guard: the
    -- lock already keeps other batches of this coupon out. The stock counter
    -- is moved by the claims_take_stock trigger, by the rows inserted here.
    WITH inserted AS (
        INSERT INTO claims (coupon_id, coupon_name, user_id)
        SELECT v_coupon_id, p_coupon_name, f.user_id
          FROM (SELECT DISTINCT ON (u.user_id) u.user_id, u.ord
                  FROM unnest(p_users) WITH ORDINALITY AS u(user_id, ord)
                 ORDER BY u.user_id, u.ord) AS f
         WHERE NOT EXISTS (SELECT 1 FROM claims AS h
                            WHERE h.coupon_id = v_coupon_id AND h.user_id = f.user_id)
         ORDER BY f.ord
         LIMIT v_remaining
        ON CONFLICT DO NOTHING
        RETURNING user_id
    )
    SELECT coalesce(array_agg(inserted.user_id), '{}') INTO v_claimed FROM inserted;

    RETURN QUERY
        SELECT u.ord::integer,
               CASE
                   WHEN n.user_id IS NOT NULL
                        AND u.ord = min(u.ord) OVER (PARTITION BY u.user_id) THEN 'claimed'
                   WHEN n.user_id IS NOT NULL OR EXISTS (
                        SELECT 1 FROM claims AS h
                         WHERE h.coupon_id = v_coupon_id AND h.user_id = u.user_id)
                        THEN 'already_claimed'
                   ELSE 'sold_out'
               END,
               v_coupon_id,
               v_remaining - cardinality(v_claimed)
          FROM unnest(p_users) WITH ORDINALITY AS u(user_id, ord)
          LEFT JOIN unnest(v_claimed) AS n(user_id) ON n.user_id = u.user_id
         ORDER BY u.ord;
END
$$;

-- Sold-out answers without the lock. Once a coupon's committed stock is zero
-- it cannot grow again through the service, and every claim that took stock is
-- committed and visible: a plain snapshot read decides who holds it. Returns
-- the coupon's identity and stock so the caller can tell its hint is stale
-- (coupon recreated under the same name, or stock returned by an operator).
CREATE FUNCTION sold_out_batch(p_coupon_name text, p_users text[])
RETURNS TABLE (arrival integer, holds boolean, coupon_id bigint, remaining integer)
LANGUAGE sql STABLE AS $$
    SELECT u.ord::integer,
           EXISTS (SELECT 1 FROM claims AS h WHERE h.coupon_id = c.id AND h.user_id = u.user_id),
           c.id,
           c.remaining_amount
      FROM unnest(p_users) WITH ORDINALITY AS u(user_id, ord)
      LEFT JOIN coupons AS c ON c.name = p_coupon_name
     ORDER BY u.ord
$$;
