"""``flashsale_requests_cut_total`` from outside: how many requests each
bound has cut off or refused, read from a live server's /metrics."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

CUT = "flashsale_requests_cut_total"


def cut_counts(text: str) -> dict[str, int]:
    """reason -> count, from a /metrics answer."""
    return {
        sample.labels["reason"]: int(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == CUT
    }


async def read_cuts(base_url: str, headers: dict[str, str] | None = None) -> dict[str, int] | None:
    """The counts; None when the scrape itself was refused (a full worker's 503)."""
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(f"{base_url}/metrics", headers=headers)
    if response.status_code == 503:
        return None
    assert response.status_code == 200, response.text
    return cut_counts(response.text)


def moved(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The reasons whose count changed, and by how much."""
    return {
        reason: after[reason] - before.get(reason, 0)
        for reason in after
        if after[reason] != before.get(reason, 0)
    }
