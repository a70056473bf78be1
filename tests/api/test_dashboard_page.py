"""The live dashboard's page (its events: tests/e2e/test_dashboard_events.py)."""

from __future__ import annotations

from tests.support.api import Client


async def test_the_dashboard_is_one_self_contained_html_page(client: Client) -> None:
    response = await client.get("/dashboard")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert 'EventSource("/dashboard/events")' in page
    assert "://" not in page  # nothing loaded from elsewhere
    assert 'name="viewport"' in page
