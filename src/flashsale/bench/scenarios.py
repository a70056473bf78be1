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
    # More than 1: coupons ``coupon``_1 .. _N of ``stock`` each, and each
    # request's coupon drawn from a Zipf(1) law over them (_1 the likeliest).
    coupons: int = 1
    # Every claim with the next of these tokens and no user_id (claim.lua's
    # tokens=<file>: flashsale bench --claimers, bench/claimers.py).
    tokens: str | None = None
    # A raffle (issue 27): the coupon is created through the service with its
    # draw far ahead, and every request is a new user's entry (202), made
    # with the backend's token (a raffle needs identified entrants).
    raffle: bool = False

    def coupon_names(self) -> list[str]:
        if self.coupons == 1:
            return [self.coupon]
        return [f"{self.coupon}_{i}" for i in range(1, self.coupons + 1)]

    def wrk_args(self, run_tag: str, bearer: str | None = None) -> list[str]:
        """claim.lua's arguments; user ids start with ``run_tag``; ``bearer``:
        the backend's token on every request (the server then has CLAIM_AUTH=backend)."""
        if self.tokens is not None:
            modes = [f"tokens={self.tokens}"]
        else:
            modes = ["idempotency"] * self.idempotency + [f"bearer={bearer}"] * (bearer is not None)
        return [self.coupon, self.path, run_tag, ",".join(modes) or "-", str(self.coupons)]


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

# A sale of many products (issue 23): 1,000 coupons, each request's coupon
# drawn from Zipf(1) (the first has ~13% of the claims, the last ~0.01%).
MANY_COUPONS = 1_000
# Stock that never runs out, on each of them.
MANY = Scenario(
    "many", "many coupons (1,000, Zipf)", "BENCH_MANY", 1_000_000_000, coupons=MANY_COUPONS
)
# Stock 10 each: most answers are sold_out, the coupons sell out in Zipf order.
SMALL_STOCK = 10
MANY_SMALL = Scenario(
    "many_small", "many small sales (1,000 x 10, Zipf)", "BENCH_SMALL", SMALL_STOCK,
    coupons=MANY_COUPONS,
)  # fmt: skip

# A raffle's entry window (issue 27): every request a new user entering one
# raffle coupon whose draw is an hour away, through the backend's token.
# Not in the default run: it needs CLAIM_AUTH=backend for the whole server, so
# it is measured beside the hot coupon of the same server (--scenarios
# ceiling,hot,raffle), both with the token.
RAFFLE = Scenario("raffle", "raffle entries", "BENCH_RAFFLE", 1_000, raffle=True)

# The ceiling goes first: it also warms up the workers.
SCENARIOS = (CEILING, HOT, HOT_KEYED, HELD, RETURNS, RUSH, MANY, MANY_SMALL)
# What --scenarios may also name.
EXTRA_SCENARIOS = (RAFFLE,)
