-- SQL that tools run, never the service at request time: the test suite's
-- and the bench's throwaway databases and the data they seed. Same
-- "-- name: <query_name>" headers as queries.sql. CREATE and DROP DATABASE
-- take no parameters, so {database} is filled with a quoted identifier
-- (admin.py's quote_identifier), never with raw text.

-- name: create_database
CREATE DATABASE {database};

-- name: create_database_from_template
-- A copy of a migrated template: far faster than migrating each database.
CREATE DATABASE {database} TEMPLATE {template};

-- name: drop_database
-- FORCE: a test's or bench's server may still hold connections.
DROP DATABASE IF EXISTS {database} WITH (FORCE);

-- name: seed_claims
-- $2 claims of coupon $1 by users 'user-1' .. 'user-$2', in one statement:
-- the statement-level trigger claims_take_stock moves the stock once.
INSERT INTO claims (coupon_id, coupon_name, user_id)
SELECT id, name, 'user-' || g FROM coupons, generate_series(1, $2) AS g WHERE name = $1;

-- name: analyze_claims
-- Fresh statistics after a bulk seed, so plans match a real coupon's.
ANALYZE claims;
