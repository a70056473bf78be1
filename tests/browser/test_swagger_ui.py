"""/docs in a real browser, with every request that leaves the server
refused: Swagger UI loads from the service itself, shows the API, and its
"Try it out" reaches the service."""

from __future__ import annotations

import json

import httpx
from playwright.async_api import Browser, Page, Route, expect

from flashsale.bench.server import RunningServer
from tests.support.chromium import keep_screenshot, needs_chromium
from tests.support.load import create_coupon

pytestmark = needs_chromium

CLAIM_OPERATION = "#operations-coupons-ApiCouponsClaimClaimCoupon"


async def offline_page(browser: Browser, base_url: str) -> tuple[Page, list[str]]:
    """A page that may only talk to the server under test; the addresses it
    tried elsewhere are collected."""
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    elsewhere: list[str] = []

    async def only_the_server(route: Route) -> None:
        if route.request.url.startswith(base_url):
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort()

    await page.route("**/*", only_the_server)
    return page, elsewhere


async def test_the_docs_work_without_a_cdn_and_try_a_claim(
    browser: Browser, live_server: RunningServer
) -> None:
    await create_coupon(live_server.base_url, "DOCS_DEAL", 5)
    page, elsewhere = await offline_page(browser, live_server.base_url)
    await page.goto(f"{live_server.base_url}/docs")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text(
        "flashsale", timeout=15_000
    )
    claim = page.locator(CLAIM_OPERATION)
    await expect(claim).to_contain_text("/api/coupons/claim")

    await claim.locator(".opblock-summary").click()
    await claim.locator("button.try-out__btn").click()
    body = json.dumps({"user_id": "docs-reader", "coupon_name": "DOCS_DEAL"})
    await claim.locator("textarea.body-param__text").fill(body)
    await claim.locator("button.execute").click()
    live = claim.locator(".live-responses-table tr.response .response-col_status")
    await expect(live).to_have_text("200", timeout=10_000)
    await expect(claim.locator(".live-responses-table tr.response")).to_contain_text("docs-reader")

    await keep_screenshot(page, "docs.png")
    assert elsewhere == []
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=10) as client:
        coupon = (await client.get("/api/coupons/DOCS_DEAL")).json()
    assert coupon["claimed_by"] == ["docs-reader"]
    assert coupon["remaining_amount"] == 4
