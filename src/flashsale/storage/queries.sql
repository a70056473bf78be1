-- All SQL the service runs at request time. Each query starts with a
-- "-- name: <query_name>" header; the store runs queries by that name.

-- name: ping
-- Health check: the database answers.
SELECT 1;

-- name: create_coupon
-- New coupon with full stock; a duplicate name fails on coupons_name_key.
INSERT INTO coupons (name, amount, remaining_amount)
VALUES ($1, $2, $2)
RETURNING id;

-- name: get_coupon
-- One coupon with its claimers in claim order, read in one snapshot so that
-- amount - remaining_amount always equals the number of claimers returned.
SELECT c.name, c.amount, c.remaining_amount,
       coalesce((SELECT array_agg(h.user_id ORDER BY h.id)
                   FROM claims AS h WHERE h.coupon_id = c.id), '{}') AS claimed_by
  FROM coupons AS c
 WHERE c.name = $1;

-- name: claim_batch
-- Decides a batch of claims for one coupon under its row lock (0003).
SELECT arrival, outcome, coupon_id, remaining
  FROM claim_batch($1, $2::text[]);

-- name: sold_out_batch
-- Lock-free answers for a coupon believed sold out (0003).
SELECT arrival, holds, coupon_id, remaining
  FROM sold_out_batch($1, $2::text[]);

-- name: claim_one
-- The original design's transaction per claim: insert the claim; the
-- claims_take_stock trigger decrements the stock in the same transaction.
-- A second claim by the same user fails on claims_pkey, an empty stock on
-- coupons_remaining_not_negative; no row back means no such coupon.
INSERT INTO claims (coupon_id, coupon_name, user_id)
SELECT c.id, c.name, $2 FROM coupons AS c WHERE c.name = $1
RETURNING coupon_id;

-- name: find_violations
-- Every coupon that breaks an invariant: stock out of bounds, stock that does
-- not match its claims, or a user holding it twice. Empty on a healthy database.
SELECT c.name, c.amount, c.remaining_amount,
       count(h.user_id) AS claims,
       count(h.user_id) - count(DISTINCT h.user_id) AS duplicate_claims
  FROM coupons AS c
  LEFT JOIN claims AS h ON h.coupon_id = c.id
 GROUP BY c.id
HAVING c.remaining_amount < 0
    OR c.remaining_amount > c.amount
    OR c.amount - c.remaining_amount <> count(h.user_id)
    OR count(h.user_id) <> count(DISTINCT h.user_id)
 ORDER BY c.name;
