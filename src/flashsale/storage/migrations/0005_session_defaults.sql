-- The service's timeouts (statement_timeout, lock_timeout,
-- idle_in_transaction_session_timeout) become its role's defaults in this
-- database, the one way to set them that a transaction-mode pooler passes
-- through: PgBouncer refuses them as startup parameters, and a session SET
-- would stay on a server connection that other clients then use. PostgreSQL
-- applies pg_db_role_setting when a backend starts, so every server
-- connection a pooler opens has them, and RESET ALL / DISCARD ALL return to
-- them. They cost nothing per query.
--
-- Start-up calls this with the configured values (milliseconds); it writes
-- only what changed and returns whether it did. It runs as the caller
-- (SECURITY INVOKER): ordinary roles may set their own defaults, and the
-- role that serves is the one whose sessions need them.
CREATE FUNCTION store_session_defaults(
    p_statement_timeout_ms integer,
    p_lock_timeout_ms integer,
    p_idle_in_transaction_timeout_ms integer
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_wanted text[] := ARRAY[
        'idle_in_transaction_session_timeout=' || p_idle_in_transaction_timeout_ms,
        'lock_timeout=' || p_lock_timeout_ms,
        'statement_timeout=' || p_statement_timeout_ms];
    v_stored text[];
BEGIN
    -- Instances starting together would update the same pg_db_role_setting
    -- row at once ("tuple concurrently updated"): one at a time, until COMMIT.
    PERFORM pg_advisory_xact_lock(x'666C617374'::bigint);  -- "flast"
    SELECT array_agg(setting ORDER BY setting) INTO v_stored
      FROM pg_db_role_setting AS s, unnest(s.setconfig) AS setting
     WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND s.setrole = (SELECT oid FROM pg_roles WHERE rolname = current_user)
       AND split_part(setting, '=', 1) IN
           ('idle_in_transaction_session_timeout', 'lock_timeout', 'statement_timeout');
    -- This backend started before the defaults were stored; a pooler keeps it
    -- and hands it to other clients, so it takes them on too (a session-level
    -- setting that persists after COMMIT, with the same values as everyone's).
    PERFORM set_config('statement_timeout', p_statement_timeout_ms::text, false);
    PERFORM set_config('lock_timeout', p_lock_timeout_ms::text, false);
    PERFORM set_config('idle_in_transaction_session_timeout',
                       p_idle_in_transaction_timeout_ms::text, false);
    IF v_stored IS NOT DISTINCT FROM v_wanted THEN
        RETURN false;
    END IF;
    EXECUTE format('ALTER ROLE %I IN DATABASE %I SET statement_timeout = %s',
                   current_user, current_database(), p_statement_timeout_ms);
    EXECUTE format('ALTER ROLE %I IN DATABASE %I SET lock_timeout = %s',
                   current_user, current_database(), p_lock_timeout_ms);
    EXECUTE format('ALTER ROLE %I IN DATABASE %I SET idle_in_transaction_session_timeout = %s',
                   current_user, current_database(), p_idle_in_transaction_timeout_ms);
    RETURN true;
END;
$$;
