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
-- Which of the constraints $1, that migrations added NOT VALID (checked for
-- new rows only), are still to be validated after the migrations commit
-- (migrations/0016 says why then). Only those: one an operator added NOT
-- VALID on purpose stays as it is.
SELECT t.relname AS table_name, k.conname AS constraint_name
  FROM pg_constraint AS k
  JOIN pg_class AS t ON t.oid = k.conrelid
 WHERE t.relnamespace = current_schema()::regnamespace AND NOT k.convalidated
   AND k.conname = ANY ($1::text[])
 ORDER BY 1, 2;

-- name: validate_constraint
-- {table} and {constraint} are quoted identifiers: DDL takes no parameters.
-- SHARE UPDATE EXCLUSIVE on the table (ROW SHARE on a foreign key's target):
-- inserts, updates and deletes go on while every row is checked.
ALTER TABLE {table} VALIDATE CONSTRAINT {constraint};

-- name: connection_capacity
-- What bounds this role's connections to this database on this server:
-- max_connections less the slots kept for superusers and (PostgreSQL 16+:
-- current_setting(..., true) is NULL before) for pg_use_reserved_connections,
-- the role's and the database's CONNECTION LIMIT (-1: none; superusers are
-- exempt), and the client backends connected now besides this one. backend_pid
-- is compared with the pid the connection was given at login: a pooler
-- (PgBouncer) hands out cancel keys of its own, so they differ behind one.
SELECT current_setting('max_connections')::integer AS max_connections,
       current_setting('superuser_reserved_connections')::integer AS superuser_reserved,
       coalesce(current_setting('reserved_connections', true)::integer, 0) AS reserved,
       r.rolsuper AS superuser,
       r.rolconnlimit AS role_limit,
       d.datconnlimit AS database_limit,
       (SELECT count(*)::integer FROM pg_stat_activity AS a
         WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()) AS in_use,
       pg_backend_pid() AS backend_pid
  FROM pg_roles AS r, pg_database AS d
 WHERE r.rolname = current_user AND d.datname = current_database();

-- name: show_max_connections
-- The embedded server's max_connections, read through psql (embedded.py):
-- labelled, to be found in psql's table output.
SELECT 'max_connections=' || current_setting('max_connections');

-- name: set_max_connections
-- {connections} is an integer formatted by embedded.py: ALTER SYSTEM takes no
-- parameters. Written to postgresql.auto.conf; read at the next start.
ALTER SYSTEM SET max_connections = {connections};
