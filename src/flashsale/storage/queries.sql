-- All SQL the service runs at request time. Each query starts with a
-- "-- name: <query_name>" header; the store runs queries by that name.

-- name: ping
-- Health check: the database answers, is a primary (a node demoted by a
-- failover is in recovery), and can commit: Patroni's synchronous_mode_strict
-- sets synchronous_standby_names to '*' when no synchronous standby is left,
-- and then every commit waits until a standby connects (a walsender row).
SELECT pg_is_in_recovery() AS read_only,
       current_setting('synchronous_standby_names') = '*'
         AND NOT EXISTS (SELECT 1 FROM pg_stat_replication) AS no_standby;

-- name: create_coupon
-- New coupon with full stock; a duplicate name fails on coupons_name_key.
INSERT INTO coupons (name, amount, remaining_amount)
VALUES ($1, $2, $2)
RETURNING id;

-- name: claim_many
-- Decides a batch of distinct users' claims on one coupon under its row lock
-- in one round trip: one row with who was granted and who held it (the
-- function: schema.sql).
SELECT coupon_id, remaining, claimed, holders
  FROM claim_many($1, $2::text[]);

-- name: sold_out_batch
-- Lock-free answers for a coupon believed sold out (the function: schema.sql).
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

-- name: count_coupons_and_claims
-- What `flashsale verify` checked, for its summary line.
SELECT (SELECT count(*) FROM coupons) AS coupons, (SELECT count(*) FROM claims) AS claims;

-- name: coupon_header
-- The coupon a streamed read starts from; its claimers come from
-- coupon_claimers in the same REPEATABLE READ snapshot.
SELECT id, name, amount, remaining_amount FROM coupons WHERE name = $1;

-- name: coupon_claimers
-- A coupon's claimers in claim order, read through a cursor in batches;
-- walks claims_coupon_order_idx, so no sort however many there are. An SQL
-- cursor (DECLARE, then FETCH): it lives in the transaction, so it works
-- behind a transaction-mode pooler, where asyncpg's cursors would leave a
-- named prepared statement on a server connection other clients then get.
DECLARE coupon_claimers NO SCROLL CURSOR FOR
SELECT user_id FROM claims WHERE coupon_id = $1 ORDER BY id;

-- name: fetch_coupon_claimers
-- The next {rows} claimers of the cursor above (FETCH takes no parameter).
FETCH FORWARD {rows} FROM coupon_claimers;

-- name: claims_page
-- Up to $3 claims of coupon $1 after claim id $2 (keyset on
-- claims_coupon_order_idx). No row at all: no such coupon; a single row with
-- a NULL id: the coupon exists and the page is empty.
SELECT h.id, h.user_id, h.claimed_at
  FROM coupons AS c
  LEFT JOIN LATERAL (SELECT id, user_id, claimed_at
                       FROM claims
                      WHERE coupon_id = c.id AND id > $2
                      ORDER BY id
                      LIMIT $3) AS h ON true
 WHERE c.name = $1
 ORDER BY h.id;

-- name: coupons_page
-- Up to $2 coupons named after $1, by name (keyset on coupons_name_key).
SELECT name, amount, remaining_amount
  FROM coupons
 WHERE name > $1
 ORDER BY name
 LIMIT $2;

-- name: recent_activity
-- The live dashboard's tick: the $1 coupons claimed most recently (then the
-- newest unclaimed ones), each with its last $2 claimers, newest first. One
-- backward probe of claims_coupon_order_idx per coupon; never a scan of claims.
SELECT s.name, s.amount, s.remaining_amount,
       ARRAY(SELECT h.user_id
               FROM claims AS h
              WHERE h.coupon_id = s.id
              ORDER BY h.id DESC
              LIMIT $2) AS recent
  FROM (SELECT c.id, c.name, c.amount, c.remaining_amount, l.last_id
          FROM coupons AS c
          CROSS JOIN LATERAL (SELECT max(h.id) AS last_id
                                FROM claims AS h
                               WHERE h.coupon_id = c.id) AS l
         ORDER BY l.last_id DESC NULLS LAST, c.id DESC
         LIMIT $1) AS s
 ORDER BY s.last_id DESC NULLS LAST, s.id DESC;

-- name: store_session_defaults
-- Start-up: the configured timeouts (ms) as the role's defaults in this
-- database (0005); true when they changed.
SELECT store_session_defaults($1, $2, $3);

-- name: session_timeouts
-- What this session's timeouts are (tests, and a start-up log line).
SELECT current_setting('statement_timeout') AS statement_timeout,
       current_setting('lock_timeout') AS lock_timeout,
       current_setting('idle_in_transaction_session_timeout') AS idle_in_transaction;
