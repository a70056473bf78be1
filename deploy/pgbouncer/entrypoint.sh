#!/bin/sh
# Render the shared pgbouncer.ini from the environment, write the user list
# (PgBouncer logs in to PostgreSQL with this password, SCRAM included), run.
set -eu
config=/tmp/pgbouncer.ini
: "${PGBOUNCER_AUTH_FILE:=/tmp/userlist.txt}"
export PGBOUNCER_AUTH_FILE
umask 077
printf '"%s" "%s"\n' "${DB_USER}" "${DB_PASSWORD}" >"${PGBOUNCER_AUTH_FILE}"
envsubst <"/etc/flashsale/pgbouncer.ini.template" >"${config}"
exec pgbouncer "${config}"
