"""The read-side use cases of a running app, created on first use from the
pool the lifespan opened (so app.py's lifespan needs no change for them)."""

from __future__ import annotations

from litestar.datastructures import State

from flashsale.browsing import CouponBrowser
from flashsale.dashboard import DashboardFeed
from flashsale.service import CouponService
from flashsale.storage.activity import ActivityReader


def _service(state: State) -> CouponService:
    service: CouponService = state.service
    return service


def browser_of(state: State) -> CouponBrowser:
    browser: CouponBrowser | None = state.get("coupon_browser")
    if browser is None:
        store = _service(state).store
        browser = CouponBrowser(store.pool, store.acquire_timeout)
        state["coupon_browser"] = browser
    return browser


def dashboard_of(state: State) -> DashboardFeed:
    feed: DashboardFeed | None = state.get("dashboard_feed")
    if feed is None:
        store = _service(state).store
        feed = DashboardFeed(ActivityReader(store.pool, store.acquire_timeout))
        state["dashboard_feed"] = feed
    return feed
