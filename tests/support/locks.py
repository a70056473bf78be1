"""Locks another session holds while a test watches the service wait on them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg


@asynccontextmanager
async def locked(db: asyncpg.Connection[Any], statement: str, *args: object) -> AsyncIterator[None]:
    """The locks ``statement`` takes, held in a transaction on ``db`` until
    the block ends; then rolled back, so the statement leaves nothing."""
    transaction = db.transaction()
    await transaction.start()
    try:
        await db.execute(statement, *args)
        yield
    finally:
        await transaction.rollback()
