"""What the test levels share; conftest.py files hold only fixtures built from these.

- api: the in-process client type and the create/claim helpers for it
- load: concurrent HTTP load against live servers (aiohttp)
- traffic: claims recorded one by one, connection errors included, while something breaks
- servers: ``flashsale serve`` through the bench's start_server, with the suite's pools
- databases: the suite's PostgreSQL server, throwaway databases (flashsale.storage.admin)
- invariants: the database's invariants, checked after every concurrent test
- stores: types of the integration fixtures
- observability: JSON log lines and generated request ids, as clients see them
- fakes: an in-memory ClaimStore for unit tests of the claim engine
- own_postgres: a PostgreSQL of a fault test's own, to stop and crash
- chromium: Debian's headless Chromium for the browser tests
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
