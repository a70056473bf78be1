"""X-Request-ID: a sane incoming id is kept, anything else is replaced by a
new one, and every response carries it, errors included."""

from __future__ import annotations

import pytest

from tests.support.api import Client
from tests.support.observability import GENERATED


async def test_a_sane_incoming_request_id_is_echoed(client: Client) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "trace-01HX/abc:42"})
    assert response.headers["X-Request-ID"] == "trace-01HX/abc:42"


async def test_a_request_without_an_id_gets_a_new_one(client: Client) -> None:
    first = (await client.get("/health")).headers["X-Request-ID"]
    second = (await client.get("/health")).headers["X-Request-ID"]
    assert GENERATED.fullmatch(first)
    assert GENERATED.fullmatch(second)
    assert first != second


@pytest.mark.parametrize(
    "incoming", ["x" * 129, "has space", "tab\tinside", "", "caf\u00e9"], ids=repr
)
async def test_an_unsafe_incoming_id_is_replaced(client: Client, incoming: str) -> None:
    response = await client.get("/health", headers=[(b"X-Request-ID", incoming.encode())])
    assert GENERATED.fullmatch(response.headers["X-Request-ID"])


async def test_an_id_of_128_printable_characters_is_kept(client: Client) -> None:
    incoming = "a" * 128
    response = await client.get("/health", headers={"X-Request-ID": incoming})
    assert response.headers["X-Request-ID"] == incoming


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/no/such/route", None, 404),
        ("DELETE", "/health", None, 405),
        ("GET", "/api/coupons/NOPE", None, 404),
        ("POST", "/api/coupons/claim", {"user_id": ""}, 400),
    ],
)
async def test_error_responses_carry_the_request_id(
    client: Client, method: str, path: str, body: object, status: int
) -> None:
    response = await client.request(
        method, path, json=body, headers={"X-Request-ID": "err-check-1"}
    )
    assert response.status_code == status
    assert response.headers["X-Request-ID"] == "err-check-1"
