"""The PostgreSQL server the suite creates its databases on. Creating,
copying and dropping databases is flashsale.storage.admin's job, the bench's
too; this only names them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from flashsale.storage import admin
from flashsale.storage.database import migrate
from flashsale.storage.migrations import load_migrations


@dataclass
class DatabaseServer:
    """A PostgreSQL server the suite may create databases on."""

    url: str  # any database on the server, used for CREATE/DROP DATABASE
    template: str = field(default_factory=lambda: f"flashsale_tpl_{uuid.uuid4().hex[:8]}")

    @property
    def template_url(self) -> str:
        return admin.database_url(self.url, self.template)

    async def prepare_template(self) -> None:
        await migrate(self.template_url)

    async def create_database(self) -> str:
        """A fresh, migrated database (a copy of the template); returns its URL."""
        name = f"flashsale_t_{uuid.uuid4().hex[:12]}"
        return await admin.create_database(self.url, name, template=self.template)

    async def drop_database(self, url: str) -> None:
        await admin.drop_database(self.url, url)


def with_password(url: str, password: str) -> str:
    """The URL with a password. The suite's servers trust local users, so it
    is carried everywhere and checked nowhere: only its absence from replies
    and logs counts."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}:{password}@{host}"))


async def migrated_to(url: str, last: int) -> None:
    """Migrations 1..last, recorded as the migrator records them."""
    connection: asyncpg.Connection[Any] = await asyncpg.connect(url)
    try:
        await connection.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for migration in load_migrations()[:last]:
            await connection.execute(migration.sql)
            await connection.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
    finally:
        await connection.close()
