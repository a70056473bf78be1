"""Types of the integration level's fixtures."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from flashsale.storage.store import CouponStore

# make_store(**environment): a store on a pool of its own, as a separate
# server process would have.
StoreFactory = Callable[..., Awaitable[CouponStore]]
