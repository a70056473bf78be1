"""schema.sql says what the migrations build: a database built from it alone
matches a migrated one, object by object (as procrastinate checks its schema)."""

from __future__ import annotations

import uuid

from flashsale.storage.admin import create_database, describe_schema, drop_database, load_schema
from tests.support.databases import DatabaseServer


async def test_schema_file_matches_a_migrated_database(
    database_server: DatabaseServer, database: str
) -> None:
    from_file = await create_database(database_server.url, f"flashsale_s_{uuid.uuid4().hex[:12]}")
    try:
        await load_schema(from_file)
        migrated = await describe_schema(database)
        declared = await describe_schema(from_file)
    finally:
        await drop_database(database_server.url, from_file)
    assert {name for _, name, _ in migrated} == {name for _, name, _ in declared}
    assert migrated == declared
