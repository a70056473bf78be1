"""X-Request-ID over a live server: every worker generates ids of its own."""

from __future__ import annotations

from flashsale.bench.server import RunningServer
from tests.support.load import claim_all
from tests.support.observability import GENERATED


async def test_generated_ids_are_unique_across_the_workers_of_a_live_server(
    live_server: RunningServer,
) -> None:
    users = [f"id-user-{i}" for i in range(400)]
    replies = await claim_all([live_server.base_url], "NO_SUCH_COUPON", users)
    ids = [reply.headers["X-Request-ID"] for reply in replies]
    assert all(GENERATED.fullmatch(request_id) for request_id in ids)
    assert len(set(ids)) == len(ids)
