-- SQL of the start-up steps (storage/database.py, migrations.py, primary.py):
-- find the primary, create the database, apply migrations. Same "-- name:"
-- headers as queries.sql; kept apart because it runs once per start, never
-- at request time.

-- name: in_recovery
-- A standby (or a primary being promoted) answers true; start-up only ever
-- writes on a server that answers false.
SELECT pg_is_in_recovery();

-- name: database_exists
SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1);

-- name: create_database
-- {database} is a quoted identifier: CREATE DATABASE takes no parameters.
CREATE DATABASE {database};

-- name: unbounded_transaction
-- Migrations run without the service's timeouts, which this connection may
-- carry (a pooled server connection has them from PgBouncer's connect_query):
-- a migration may rewrite a big table, and waiting for another instance's
-- migrations is the point of the lock.
SET LOCAL statement_timeout = 0;
SET LOCAL lock_timeout = 0;
SET LOCAL idle_in_transaction_session_timeout = 0;

-- name: migration_lock
-- Transaction-level: released by COMMIT or ROLLBACK, so it holds behind a
-- transaction-mode pooler (a session-level pg_advisory_lock would stay on a
-- server connection that the next transaction may not get).
SELECT pg_advisory_xact_lock($1);

-- name: create_schema_migrations
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now());

-- name: applied_migrations
SELECT version FROM schema_migrations;

-- name: record_migration
INSERT INTO schema_migrations (version, name) VALUES ($1, $2);

-- name: unvalidated_constraints
-- Constraints a migration added NOT VALID (checked for new rows only), to be
-- validated after the migrations commit (migrations/0016 says why then).
SELECT t.relname AS table_name, k.conname AS constraint_name
  FROM pg_constraint AS k
  JOIN pg_class AS t ON t.oid = k.conrelid
 WHERE t.relnamespace = current_schema()::regnamespace AND NOT k.convalidated
 ORDER BY 1, 2;

-- name: validate_constraint
-- {table} and {constraint} are quoted identifiers: DDL takes no parameters.
-- SHARE UPDATE EXCLUSIVE on the table (ROW SHARE on a foreign key's target):
-- inserts, updates and deletes go on while every row is checked.
ALTER TABLE {table} VALIDATE CONSTRAINT {constraint};
