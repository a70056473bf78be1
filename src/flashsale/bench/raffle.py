"""The raffle entries scenario (issue 27): its server's identities, its
coupon created through the service, and the check of its entries.

A raffle needs identified entrants, so a run that measures it serves with
CLAIM_AUTH=backend and a throwaway backend token that wrk sends on every
request of every scenario (the hot coupon beside it pays the same token
check). The coupon is created over HTTP, as an operator would, with its draw
an hour away: no draw happens during the run."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import httpx

from flashsale.bench.scenarios import Scenario

DRAW_AHEAD = timedelta(hours=1)
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class RaffleSetupError(RuntimeError):
    """The service would not create the raffle coupon."""


def new_backend_token() -> str:
    return secrets.token_urlsafe(24)


def identity_env(token: str) -> dict[str, str]:
    """What the server needs so that entries have identities: only the
    backend (and the operator) may claim or enter, for any user."""
    return {"CLAIM_AUTH": "backend", "BACKEND_TOKEN": f"bench:{token}"}


def create_raffle(base_url: str, scenario: Scenario) -> None:
    """The scenario's raffle coupon, through the admin route (open on the
    bench's loopback server: it sets no ADMIN_TOKEN)."""
    draw_at = (datetime.now(UTC) + DRAW_AHEAD).isoformat(timespec="seconds")
    body = {
        "name": scenario.coupon,
        "amount": scenario.stock,
        "allocation": "raffle",
        "draw_at": draw_at.replace("+00:00", "Z"),
    }
    answer = httpx.post(f"{base_url}/api/coupons", json=body, timeout=TIMEOUT)
    if answer.status_code != 201:
        raise RaffleSetupError(
            f"creating raffle {scenario.coupon} answered {answer.status_code}: {answer.text[:300]}"
        )


def entry_count_problems(entries: int, claims: int, accepted: int, in_flight: int) -> list[str]:
    """Every 202 wrk saw is one entry row (the primary key makes a user's
    rows one); up to one more per connection, for the answers in flight when
    wrk stopped (the server commits them, wrk never reads them); no claim."""
    problems = []
    if not 0 <= entries - accepted <= in_flight:
        problems.append(f"{entries} entry rows for {accepted} answers 202")
    if claims:
        problems.append(f"{claims} claims of a raffle whose draw is an hour away")
    return problems
