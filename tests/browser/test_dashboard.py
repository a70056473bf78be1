"""The dashboard in a real browser watches the stock drain while claims
arrive through the API, each coupon's status, holds and redemptions, and a
raffle's phase, entries and waitlist (screenshots at desktop and phone width)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, expect

from flashsale.bench.server import RunningServer
from tests.support.chromium import keep_screenshot, needs_chromium
from tests.support.load import claim_all, create_coupon
from tests.support.raffles import BACKEND, create_raffle, enter
from tests.support.servers import serve

pytestmark = needs_chromium


async def test_the_dashboard_shows_the_stock_drain_live(
    browser: Browser, live_server: RunningServer
) -> None:
    await create_coupon(live_server.base_url, "FLASH", 100)
    await create_coupon(live_server.base_url, "CALM", 10)
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await page.goto(f"{live_server.base_url}/dashboard")
    card = page.locator('section.coupon[data-coupon="FLASH"]')
    await expect(card.locator(".remaining")).to_have_text("100", timeout=10_000)
    await expect(page.locator("#status")).to_contain_text("live")

    users = [f"shopper-{i}" for i in range(25)]
    replies = await claim_all([live_server.base_url], "FLASH", users)
    assert {reply.status for reply in replies} == {200}

    await expect(card.locator(".remaining")).to_have_text("75", timeout=10_000)
    # The ten latest claimers, newest first; which of the 25 were last is up
    # to the race between them.
    await expect(card.locator(".claimer")).to_have_count(10)
    await expect(card.locator(".claimer").first).to_have_text(re.compile(r"^shopper-\d+$"))
    await keep_screenshot(page, "dashboard.png")


async def test_the_dashboard_is_readable_on_a_phone(
    browser: Browser, live_server: RunningServer
) -> None:
    await create_coupon(live_server.base_url, "PHONE_DEAL_WITH_A_RATHER_LONG_NAME", 40)
    await claim_all([live_server.base_url], "PHONE_DEAL_WITH_A_RATHER_LONG_NAME", ["a", "b"])
    page = await browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    await page.goto(f"{live_server.base_url}/dashboard")
    card = page.locator("section.coupon").first
    await expect(card.locator(".remaining")).to_have_text("38", timeout=10_000)
    # Nothing wider than the screen: no sideways scrolling on a phone.
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    box = await card.bounding_box()
    assert box is not None
    assert box["width"] <= 390
    await keep_screenshot(page, "dashboard-phone.png")


async def test_the_dashboard_shows_a_coupons_status_holds_and_redemptions(
    browser: Browser, live_server: RunningServer
) -> None:
    base = live_server.base_url
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        created = await client.post(
            "/api/coupons", json={"name": "HELD", "amount": 10, "hold_seconds": 60}
        )
        assert created.status_code == 201
        replies = await claim_all([base], "HELD", ["ann", "bob", "cy"])
        assert {reply.status for reply in replies} == {200}
        redeemed = await client.post("/api/coupons/HELD/claims/ann/redeem")
        assert redeemed.status_code == 200
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        await page.goto(f"{base}/dashboard")
        card = page.locator('section.coupon[data-coupon="HELD"]')
        await expect(card.locator(".status")).to_have_text("active", timeout=10_000)
        await expect(card.locator(".holds")).to_have_text("2")
        await expect(card.locator(".redeemed")).to_have_text("1")
        await expect(card.locator(".remaining")).to_have_text("7")

        released = await client.delete("/api/coupons/HELD/claims/bob")
        assert released.status_code == 204
        paused = await client.patch("/api/coupons/HELD", json={"active": False})
        assert paused.status_code == 200
        await expect(card.locator(".status")).to_have_text("paused", timeout=10_000)
        await expect(card.locator(".holds")).to_have_text("1")
        await expect(card.locator(".remaining")).to_have_text("8")
        await keep_screenshot(page, "dashboard-sale-life.png")


@pytest.fixture
def raffle_server(database: str, tmp_path: Path) -> Iterator[RunningServer]:
    """Entrants need identities; no ADMIN_TOKEN, so the dashboard is open on loopback."""
    env = {"CLAIM_AUTH": "backend", "BACKEND_TOKEN": BACKEND}
    server = serve(database, tmp_path / "server.log", workers=2, env=env)
    yield server
    server.stop()


async def test_the_dashboard_shows_a_raffles_phase_entries_and_waitlist(
    browser: Browser, raffle_server: RunningServer
) -> None:
    base = raffle_server.base_url
    with httpx.Client(base_url=base, timeout=10) as admin:
        create_raffle(admin, "RAFFLE", 2, ahead_s=6)
    enter(base, "RAFFLE", ["ann", "bob", "cy", "dee", "eve"])
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await page.goto(f"{base}/dashboard")
    card = page.locator('section.coupon[data-coupon="RAFFLE"]')
    await expect(card.locator(".entries")).to_have_text("5", timeout=10_000)
    await expect(card.locator(".waitlisted")).to_have_text(
        "\u2013"
    )  # an en dash: no waitlist before the draw
    # The draw happens at draw_at with no request; the page follows it.
    await expect(card.locator(".status")).to_have_text("drawn", timeout=30_000)
    await expect(card.locator(".waitlisted")).to_have_text("3")
    await expect(card.locator(".remaining")).to_have_text("0")
    await expect(card.locator(".claimer")).to_have_count(2)
    await keep_screenshot(page, "dashboard-raffle.png")
