"""Raffles for the tests (issue 27): a server's identities (a raffle refuses
CLAIM_AUTH=open), creating one with its draw a few seconds ahead, entering
through the backend's token, waiting for the draw by polling the coupon's
status (never a fixed sleep), and ``flashsale verify-draw`` as a command."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

ADMIN = "admin-token-for-the-raffle-tests"
BACKEND = "backend-token-for-the-raffle-tests"
IDENTITIES = {"CLAIM_AUTH": "backend", "ADMIN_TOKEN": ADMIN, "BACKEND_TOKEN": BACKEND}
DRAW_WAIT_S = 60  # the longest the draw may take to show once draw_at passed


def as_admin(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)


def create_raffle(client: httpx.Client, name: str, amount: int, ahead_s: float) -> dict[str, Any]:
    draw_at = datetime.now(UTC) + timedelta(seconds=ahead_s)
    body = {"name": name, "amount": amount, "allocation": "raffle", "draw_at": draw_at.isoformat()}
    created = client.post("/api/coupons", json=body)
    assert created.status_code == 201, created.text
    coupon: dict[str, Any] = created.json()
    return coupon


def enter(base_url: str, coupon: str, users: list[str]) -> None:
    headers = {"Authorization": f"Bearer {BACKEND}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=10) as client:
        for user in users:
            body = {"user_id": user, "coupon_name": coupon}
            entered = client.post("/api/coupons/claim", json=body)
            assert entered.status_code == 202, entered.text


def wait_for_the_draw(client: httpx.Client, coupon: str) -> dict[str, Any]:
    """The coupon once its status says drawn, polled (the draw runs on its own)."""
    deadline = time.monotonic() + DRAW_WAIT_S
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = client.get(f"/api/coupons/{coupon}").json()
        if body["status"] == "drawn":
            return body
        time.sleep(0.2)
    raise AssertionError(f"{coupon} was not drawn within {DRAW_WAIT_S} s: {body}")


def verify_draw(base_url: str, coupon: str, *options: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "flashsale", "verify-draw", base_url, coupon, *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
