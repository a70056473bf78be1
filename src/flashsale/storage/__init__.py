"""PostgreSQL: connection pool, named queries, migrations, embedded server."""
