"""The PostgreSQL server the suite creates its databases on. Creating,
copying and dropping databases is flashsale.storage.admin's job, the bench's
too; this only names them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from flashsale.storage import admin
from flashsale.storage.database import migrate


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
