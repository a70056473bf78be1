"""What the bench measures: each scenario is one wrk run against one server."""

from __future__ import annotations

from dataclasses import dataclass

CLAIM_PATH = "/api/coupons/claim"
CEILING_PATH = "/bench/claim-ceiling"


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str
    title: str
    coupon: str
    stock: int | None  # None: no coupon, the request never reaches the database
    path: str = CLAIM_PATH
    hold_seconds: int | None = None  # every claim a hold of this many seconds
    seeded: int = 0  # claims by 'user-1' .. 'user-N' made before the run
    idempotency: bool = False  # every claim with an Idempotency-Key of its own

    def wrk_args(self, run_tag: str) -> list[str]:
        """claim.lua's arguments; user ids start with ``run_tag``."""
        keyed = ["idempotency"] if self.idempotency else []
        return [self.coupon, self.path, run_tag, *keyed]


# A bare ASGI callable served by Granian as the service is: no framework, no
# database (bench/raw_ceiling.py); once per run, beside every strategy.
RAW = Scenario("raw", "raw ceiling", "BENCH_RAW", None, CLAIM_PATH)
# The same server, same body and same response, minus the database.
CEILING = Scenario("ceiling", "no-db ceiling", "BENCH_CEILING", None, CEILING_PATH)
# Stock that never runs out: every request is a new user's successful claim.
HOT = Scenario("hot", "hot coupon", "BENCH_HOT", 1_000_000_000)
# The same, every claim with an Idempotency-Key (stored in its batch, issue 10).
HOT_KEYED = Scenario(
    "hot_keyed", "hot coupon, idempotency keys", "BENCH_HOT_KEYED", 1_000_000_000, idempotency=True
)
# The same, every claim a 30 s hold (expires_at computed and stored per claim).
HELD = Scenario("held", "hot coupon, 30 s holds", "BENCH_HELD", 2_000_000_000, hold_seconds=30)
# The same while stock comes back: RETURNS_EACH seeded claims released through
# the release function and RETURNS_EACH more expiring, spread over the run
# (bench/runner.py), so releases, sweeps and claim batches share the coupon's lock.
RETURNS_EACH = 4_000
RETURNS = Scenario(
    "returns",
    "hot coupon, releases + expiries",
    "BENCH_RETURNS",
    2_000_000_000,
    hold_seconds=30,
    seeded=2 * RETURNS_EACH,
)
# A real flash sale: 1,000 in stock, then everyone else is told it is sold out.
RUSH_STOCK = 1_000
RUSH = Scenario("rush", "rush (stock 1,000)", "BENCH_RUSH", RUSH_STOCK)

# The ceiling goes first: it also warms up the workers.
SCENARIOS = (CEILING, HOT, HOT_KEYED, HELD, RETURNS, RUSH)
