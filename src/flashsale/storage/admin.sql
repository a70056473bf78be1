-- SQL that tools run, never the service at request time: the test suite's
-- and the bench's throwaway databases and the data they seed (a plain
-- CREATE DATABASE is startup.sql's create_database). Same
-- "-- name: <query_name>" headers as queries.sql. CREATE and DROP DATABASE
-- take no parameters, so {database} is filled with a quoted identifier
-- (admin.py's quote_identifier), never with raw text.

-- name: create_database_from_template
-- A copy of a migrated template: far faster than migrating each database.
CREATE DATABASE {database} TEMPLATE {template};

-- name: drop_database
-- FORCE: a test's or bench's server may still hold connections.
DROP DATABASE IF EXISTS {database} WITH (FORCE);

-- name: seed_coupon
-- A first-come coupon of $2 units (holds of $3 seconds, or none), in the
-- columns every schema since 0006 has: tests seed databases migrated only
-- part of the way (test_coupon_link.py) with it.
INSERT INTO coupons (name, amount, remaining_amount, hold_seconds) VALUES ($1, $2, $2, $3);

-- name: seed_claims
-- $2 claims of coupon $1 by users 'user-1' .. 'user-$2', in one statement:
-- the statement-level trigger claims_take_stock moves the stock once. They
-- never expire unless schedule_expiries says when.
INSERT INTO claims (coupon_id, coupon_name, user_id)
SELECT id, name, 'user-' || g FROM coupons, generate_series(1, $2) AS g WHERE name = $1;

-- name: schedule_expiries
-- The bench's expiries: the claims of coupon $1 by the users $2 expire at
-- random instants over the next $3 seconds, while claims go on.
UPDATE claims
   SET expires_at = now() + random() * $3::float8 * interval '1 second'
 WHERE coupon_name = $1 AND user_id = ANY ($2::text[]);

-- name: coupons_stock
-- The bench's many-coupon scenarios: the summed stock of the coupons $1.
SELECT coalesce(sum(amount), 0)::bigint AS amount,
       coalesce(sum(remaining_amount), 0)::bigint AS remaining
  FROM coupons WHERE name = ANY ($1::text[]);

-- name: count_unseeded_claims
-- Claim rows of coupon $1 made by the bench's load (seeded users are 'user-N').
SELECT count(*) FROM claims WHERE coupon_name = $1 AND user_id NOT LIKE 'user-%';

-- name: count_entries
-- Entry rows of raffle $1 (the bench's raffle entries scenario): one per user
-- by the primary key (coupon_id, user_id).
SELECT count(*) FROM raffle_entries AS e JOIN coupons AS c ON c.id = e.coupon_id WHERE c.name = $1;

-- name: analyze_claims
-- Fresh statistics after a bulk seed, so plans match a real coupon's.
ANALYZE claims;

-- name: describe_schema
-- The public schema as the catalog has it, one row per object, comparable
-- between two databases: columns, constraints, indexes, functions (with their
-- bodies) and triggers. schema_migrations is the migrator's own bookkeeping.
SELECT 'column' AS kind,
       c.relname || '.' || a.attname AS name,
       format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
           || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
           || CASE a.attidentity WHEN 'a' THEN ' identity always'
                                 WHEN 'd' THEN ' identity by default' ELSE '' END AS definition
  FROM pg_attribute AS a
  JOIN pg_class AS c ON c.oid = a.attrelid
  JOIN pg_namespace AS n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
   AND c.relname <> 'schema_migrations'
UNION ALL
SELECT 'constraint', t.relname || '.' || k.conname, pg_get_constraintdef(k.oid)
  FROM pg_constraint AS k
  JOIN pg_class AS t ON t.oid = k.conrelid
  JOIN pg_namespace AS n ON n.oid = t.relnamespace
 WHERE n.nspname = 'public' AND t.relname <> 'schema_migrations'
UNION ALL
SELECT 'index', i.indexname, i.indexdef
  FROM pg_indexes AS i
 WHERE i.schemaname = 'public' AND i.tablename <> 'schema_migrations'
UNION ALL
SELECT 'function', p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       pg_get_functiondef(p.oid)
  FROM pg_proc AS p
  JOIN pg_namespace AS n ON n.oid = p.pronamespace
 WHERE n.nspname = 'public'
UNION ALL
SELECT 'trigger', g.tgname, pg_get_triggerdef(g.oid)
  FROM pg_trigger AS g
  JOIN pg_class AS c ON c.oid = g.tgrelid
  JOIN pg_namespace AS n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND NOT g.tgisinternal
 ORDER BY 1, 2;

-- name: vacuum_database
-- The bench between two runs: the previous run's dead rows gone and the
-- statistics fresh, so no run pays for the one before it (autovacuum).
VACUUM (ANALYZE);

-- name: checkpoint
-- ... and its dirty pages written, so no run pays for the previous one's
-- checkpoint either (needs superuser or pg_checkpoint: skipped otherwise).
CHECKPOINT;

-- name: seed_raffle_entries
-- $2 entrants user-1 .. user-$2 of raffle $1, loaded in one statement
-- (flashsale bench --draw) with their digests and tickets as an entering
-- batch computes them (raffle_enter), and the count the batch would move.
WITH r AS (
    SELECT c.id, s.inner_key, s.outer_key
      FROM coupons AS c JOIN raffle_seeds AS s ON s.coupon_id = c.id
     WHERE c.name = $1
), loaded AS (
    INSERT INTO raffle_entries (coupon_id, user_id, entrant, ticket)
    SELECT r.id, u.user_id, u.entrant, raffle_ticket(r.inner_key, r.outer_key, u.entrant)
      FROM r, generate_series(1, $2::integer) AS g(n),
           LATERAL (SELECT 'user-' || g.n AS user_id,
                           sha256(convert_to('user-' || g.n, 'UTF8')) AS entrant) AS u
    RETURNING 1
)
UPDATE coupons AS c SET draw_entries = c.draw_entries + (SELECT count(*) FROM loaded)
  FROM r WHERE c.id = r.id;

-- name: make_draw_due
-- Raffle $1's draw_at passes now (the bench: no wait for the clock).
UPDATE coupons SET draw_at = clock_timestamp(), starts_at = NULL WHERE name = $1;

-- name: vacuum_raffle_entries
-- As autovacuum would have left entries that arrived over minutes.
VACUUM (ANALYZE) raffle_entries;

-- name: draw_outcome
-- What the draw of raffle $1 left: entries placed (the progress row), the
-- entries whose derived place checks out (each mark's place is one past
-- the entries before it, counted mark to mark: every entry once), claims,
-- events by type.
WITH coupon AS (SELECT c.id FROM coupons AS c WHERE c.name = $1),
     marks AS (SELECT k.place, k.ticket, k.entrant,
                      lead(k.ticket) OVER w AS next_ticket, lead(k.entrant) OVER w AS next_entrant
                 FROM raffle_draw_marks AS k JOIN coupon ON k.coupon_id = coupon.id
               WINDOW w AS (ORDER BY k.ticket, k.entrant)),
     spans AS (SELECT m.place, s.entries,
                      sum(s.entries) OVER (ORDER BY m.ticket, m.entrant) - s.entries AS before
                 FROM marks AS m, coupon,
                      LATERAL (SELECT count(*) AS entries FROM raffle_entries AS x
                                WHERE x.coupon_id = coupon.id
                                  AND (x.ticket, x.entrant) >= (m.ticket, m.entrant)
                                  AND (m.next_ticket IS NULL
                                       OR (x.ticket, x.entrant) < (m.next_ticket, m.next_entrant)))
                              AS s)
SELECT (SELECT d.placed FROM raffle_draws AS d JOIN coupon ON d.coupon_id = coupon.id) AS placed,
       (SELECT coalesce(sum(s.entries) FILTER (WHERE s.place = s.before + 1), 0)
          FROM spans AS s)::integer AS places_checked,
       (SELECT count(*) FROM claims WHERE coupon_name = $1) AS claims,
       (SELECT count(*) FROM events WHERE coupon_name = $1 AND type = 'waitlisted') AS waitlisted;

-- name: backend_pid
-- This session's server process (its CPU is read from /proc when local).
SELECT pg_backend_pid();
