"""The dashboard feed on a real database: viewers of one worker share one
poll per tick, and polling stops with the last viewer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import asyncpg

from flashsale.claims.batched import BatchedClaims
from flashsale.service.dashboard import DashboardFeed, DashboardSnapshot
from flashsale.service.ports import CouponActivity, CouponChange, NewCoupon
from flashsale.storage.reads import CouponReadStore
from flashsale.storage.store import CouponStore
from tests.support.counting import Counting
from tests.support.stores import outcome_of
from tests.support.traffic import wait_until

if TYPE_CHECKING:
    Connection = asyncpg.Connection[Any]


class CountingReader(Counting[CouponReadStore]):
    """The real reader, counting its queries."""

    async def recent_activity(self, *, coupons: int, claimers: int) -> list[CouponActivity]:
        return await self.poll().recent_activity(coupons=coupons, claimers=claimers)


async def watch(feed: DashboardFeed, count: int) -> list[DashboardSnapshot]:
    seen: list[DashboardSnapshot] = []
    async for snapshot in feed.snapshots():
        seen.append(snapshot)
        if len(seen) == count:
            break
    return seen


async def test_viewers_share_one_poll_per_tick(
    store: CouponStore, read_store: CouponReadStore
) -> None:
    await store.create_coupon(NewCoupon(name="SHARED", amount=10))
    reader = CountingReader(read_store)
    feed = DashboardFeed(reader, tick=0.05)
    views = await asyncio.gather(*(watch(feed, 3) for _ in range(8)))
    assert all(len(view) == 3 for view in views)
    assert views[0][0].coupons[0].name == "SHARED"
    # Eight viewers polling on their own would have run 24 queries.
    assert reader.polls <= 5


async def test_polling_stops_with_the_last_viewer(read_store: CouponReadStore) -> None:
    reader = CountingReader(read_store)
    feed = DashboardFeed(reader, tick=0.05)
    await watch(feed, 2)
    # The poller notices nobody watches (later on a loaded machine): the
    # count stops growing; a poller that never noticed grows it every tick.
    assert await stops_growing(lambda: reader.polls, quiet=6 * feed.tick)
    assert len(await watch(feed, 2)) == 2  # and starts again for a new viewer


async def stops_growing(count: Callable[[], int], *, quiet: float, deadline: float = 30) -> bool:
    """Whether ``count()`` stays the same for ``quiet`` seconds in a row
    within ``deadline`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    last, since = count(), loop.time()
    while loop.time() < end:
        await asyncio.sleep(quiet / 6)
        if count() != last:
            last, since = count(), loop.time()
        elif loop.time() - since >= quiet:
            return True
    return False


async def test_viewers_stop_when_the_worker_stops(read_store: CouponReadStore) -> None:
    feed = DashboardFeed(read_store, tick=0.05)
    stop = asyncio.Event()
    seen: list[DashboardSnapshot] = []

    async def view() -> None:
        async for snapshot in feed.snapshots(stop.is_set):
            seen.append(snapshot)

    viewer = asyncio.create_task(view())
    assert await wait_until(lambda: bool(seen), limit=30)
    stop.set()
    await asyncio.wait_for(viewer, timeout=30)  # ends on its own, without cancellation


async def test_a_tile_shows_status_holds_and_redemptions(
    store: CouponStore, engine: BatchedClaims, read_store: CouponReadStore, db: Connection
) -> None:
    await store.create_coupon(NewCoupon(name="LIFE", amount=5, hold_seconds=60))
    for user in ["a", "b", "c"]:
        await outcome_of(engine, coupon_name="LIFE", user_id=user)
    await store.redeem_claim(coupon_name="LIFE", user_id="a")
    await db.execute("UPDATE claims SET expires_at = now() WHERE user_id = 'c'")  # due, unswept
    await store.change_coupon("LIFE", CouponChange(active=False))
    feed = DashboardFeed(read_store, tick=0.05)
    [snapshot] = await watch(feed, 1)
    tile = snapshot.coupons[0]
    assert (tile.status, tile.holds, tile.redeemed, tile.remaining_amount) == ("paused", 1, 1, 3)
    assert tile.recent_claimers == ["b", "a"]


async def test_a_raffle_tile_shows_its_phase_entries_and_waitlist(
    store: CouponStore, read_store: CouponReadStore, db: Connection
) -> None:
    await store.create_coupon(NewCoupon(name="RAFFLE", amount=1))
    # A raffle whose draw is ahead, with a seed and three entries, made by the
    # migration's own functions (the HTTP path: tests/browser/test_dashboard.py).
    coupon_id = await db.fetchval(
        "UPDATE coupons SET allocation = 'raffle', draw_at = now() + interval '1 hour', "
        "draw_commitment = raffle_keep_seed(id, sha256('seed')) WHERE name = 'RAFFLE' "
        "RETURNING id"
    )
    await db.execute("SELECT raffle_enter($1, ARRAY['ann', 'bob', 'cy'], now())", coupon_id)
    feed = DashboardFeed(read_store, tick=0.05)
    [before] = await watch(feed, 1)
    tile = before.coupons[0]
    assert (tile.status, tile.allocation, tile.entries, tile.waitlisted) == (
        "entries_open", "raffle", 3, None,
    )  # fmt: skip
    await db.execute("UPDATE coupons SET draw_at = now() WHERE id = $1", coupon_id)
    await db.fetch("SELECT raffle_start_draws(10)")
    assert await db.fetchval("SELECT raffle_draw_step($1, 1000)", coupon_id)
    [after] = await watch(DashboardFeed(read_store, tick=0.05), 1)
    tile = after.coupons[0]
    assert (tile.status, tile.entries, tile.waitlisted, tile.remaining_amount) == ("drawn", 3, 2, 0)
    assert len(tile.recent_claimers) == 1


async def test_a_first_come_tile_has_no_raffle_figures(
    store: CouponStore, read_store: CouponReadStore
) -> None:
    await store.create_coupon(NewCoupon(name="PLAIN", amount=5))
    [snapshot] = await watch(DashboardFeed(read_store, tick=0.05), 1)
    tile = snapshot.coupons[0]
    assert (tile.allocation, tile.entries, tile.waitlisted) == ("first_come", None, None)
