"""A fresh database per bench run, its coupons, and the checks afterwards."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from flashsale.bench.raffle import entry_count_problems
from flashsale.bench.scenarios import RUSH_STOCK, Scenario
from flashsale.bench.wrk import WrkResult
from flashsale.storage.admin import (
    count_entries,
    count_unseeded_claims,
    coupons_stock,
    database_url,
    drop_database,
    seed_coupon,
    seed_coupons,
)
from flashsale.storage.database import migrate
from flashsale.storage.verify import verify_database

__all__ = ["Check", "check_scenario", "create_fresh_database", "drop_database"]


async def create_fresh_database(server_url: str, scenarios: tuple[Scenario, ...]) -> str:
    """A new, migrated database holding the scenarios' coupons; its URL."""
    url = database_url(server_url, f"flashsale_bench_{uuid.uuid4().hex[:10]}")
    await migrate(url)  # creates the database, then applies the migrations
    for scenario in scenarios:
        if scenario.raffle:  # created through the service (bench/raffle.py)
            continue
        if scenario.stock is not None and scenario.coupons > 1:
            await seed_coupons(url, scenario.coupon_names(), scenario.stock)
        elif scenario.stock is not None:
            await seed_coupon(
                url,
                scenario.coupon,
                scenario.stock,
                claims=scenario.seeded,
                hold_seconds=scenario.hold_seconds,
            )
    return url


@dataclass(frozen=True, slots=True)
class Check:
    """What the database says after a scenario; ``problems`` empty means sound."""

    claims: int | None  # claim rows of the scenario's coupon (a raffle's: entry rows)
    problems: list[str] = field(default_factory=list)
    rows: str = "claims"  # what ``claims`` counts

    @property
    def ok(self) -> bool:
        return not self.problems


async def check_scenario(
    url: str, scenario: Scenario, result: WrkResult, in_flight_bound: int
) -> Check:
    """No invariant broken, and every 200 wrk saw is a committed claim row.

    wrk stops at the deadline without reading the answers still in flight, and
    the server commits those claims anyway: there may be up to one row more
    than 200s per connection, never fewer rows than 200s."""
    if scenario.stock is None:
        return Check(claims=None)
    report = await verify_database(url)
    names = scenario.coupon_names()
    amount, remaining = await coupons_stock(url, names)
    claims = amount - remaining
    if scenario.raffle:
        entries = await count_entries(url, scenario.coupon)
        problems = [v.describe() for v in report.violations if v.coupon in names]
        problems += entry_count_problems(entries, claims, result.ok, in_flight_bound)
        return Check(claims=entries, problems=problems, rows="entries")
    if scenario.seeded:  # seeded claims came and went: count the load's own rows
        claims = await count_unseeded_claims(url, scenario.coupon)
    problems = [v.describe() for v in report.violations if v.coupon in names]
    problems += claim_count_problems(scenario, result.ok, claims, remaining)
    if not 0 <= claims - result.ok <= in_flight_bound:
        problems.append(f"{claims} claim rows for {result.ok} answers 200")
    return Check(claims=claims, problems=problems)


def claim_count_problems(scenario: Scenario, ok: int, claims: int, remaining: int) -> list[str]:
    if scenario.stock != RUSH_STOCK:
        return []
    problems = []
    if claims != RUSH_STOCK or remaining != 0:
        problems.append(f"rush: {claims} claims and {remaining} remaining, expected 1000 and 0")
    if ok != RUSH_STOCK:
        problems.append(f"rush: {ok} answers 200, expected exactly {RUSH_STOCK}")
    return problems
