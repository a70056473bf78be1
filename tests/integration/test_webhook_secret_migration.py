"""An endpoint registered before the Standard Webhooks format keeps its key:
the migration writes its secret as whsec_ + base64 of the secret's bytes, so
a receiver that writes its secret that way verifies every delivery, and the
deprecated header keeps verifying with the secret as it was."""

from __future__ import annotations

import base64
import time
import uuid

import asyncpg
from standardwebhooks.webhooks import Webhook

from flashsale.service.signing import signed_headers, verify_legacy
from flashsale.storage.admin import create_database, drop_database
from flashsale.storage.migrations import load_migrations
from tests.support.databases import DatabaseServer

OLD_SECRETS = ["whsec_0123456789abcdef-never-shown", "printable!ASCII~secret=" + "y" * 200]
BODY = b'{"id":1}'


async def test_an_old_secret_becomes_the_key_of_a_standard_one(
    database_server: DatabaseServer,
) -> None:
    url = await create_database(database_server.url, f"flashsale_m_{uuid.uuid4().hex[:12]}")
    try:
        migrated = await secrets_after_migration(url)
    finally:
        await drop_database(database_server.url, url)
    for old, new in zip(OLD_SECRETS, migrated, strict=True):
        assert new == "whsec_" + base64.b64encode(old.encode()).decode()
        assert base64.b64decode(new.removeprefix("whsec_")) == old.encode()  # 16-256 bytes then
        now = int(time.time())
        headers = signed_headers([new], "7", now, BODY)
        assert Webhook(new).verify(BODY, headers) == {"id": 1}
        assert verify_legacy(old.encode(), BODY, headers["Flashsale-Signature"])


async def secrets_after_migration(url: str) -> list[str]:
    """The migrations before webhook_signing, the old endpoints registered, then the rest."""
    connection = await asyncpg.connect(url)
    try:
        migrations = load_migrations()
        signing = next(m.version for m in migrations if m.name == "webhook_signing")
        for migration in migrations:
            if migration.version == signing:
                for secret in OLD_SECRETS:
                    await connection.execute(
                        "INSERT INTO webhooks (url, events, secret) "
                        "VALUES ('https://old.example/h', '{claimed}', $1)",
                        secret,
                    )
            await connection.execute(migration.sql)
        rows = await connection.fetch("SELECT secret FROM webhooks ORDER BY id")
    finally:
        await connection.close()
    return [row["secret"] for row in rows]
