"""``hooks_client``: the app in process with the webhook settings of
tests.support.webhooks.FAST, plus whatever a module's ``hooks_settings``
fixture adds (it overrides the empty one here)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.api import Client, in_process_client
from tests.support.network import Network
from tests.support.webhooks import FAST


@pytest.fixture
def hooks_settings() -> dict[str, str]:
    return {}


@pytest.fixture
async def hooks_client(
    database: str, network: Network, hooks_settings: dict[str, str]
) -> AsyncIterator[Client]:
    async with in_process_client(database, **{**FAST, **hooks_settings}) as client:
        yield client
