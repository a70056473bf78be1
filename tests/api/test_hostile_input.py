"""Malformed and hostile requests, in process: each gets a 4xx with the JSON
error body, never a 500, never a trace, SQL or driver text, and none of them
changes the database. (The basic validation cases live in
tests/api/test_api_contract.py; these are the nastier ones.)"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from tests.support.api import Client, create_coupon

JSON = {"content-type": "application/json"}
# What must never reach a client: Python, SQL and driver internals.
LEAKS = ("Traceback", 'File "', "asyncpg", "SELECT", "INSERT", "psycopg", "postgres", "Error(")


def assert_clean_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == code
    for leak in LEAKS:
        assert leak not in response.text


NESTED = 30_000  # deep, yet under the 64 KiB body limit

HOSTILE_BODIES: list[tuple[str, str, bytes]] = [
    ("invalid UTF-8 in a string", "claim", b'{"user_id": "\xff\xfe", "coupon_name": "C"}'),
    ("invalid UTF-8 outside strings", "create", b'{"name": "A", "amount": 1}\xff'),
    ("a lone surrogate escape", "claim", b'{"user_id": "\\ud800", "coupon_name": "C"}'),
    ("a NUL byte outside strings", "create", b'{"name": "A",\x00 "amount": 1}'),
    ("an escaped NUL in a name", "create", b'{"name": "A\\u0000", "amount": 1}'),
    ("an escaped NUL in a user id", "claim", b'{"user_id": "a\\u0000", "coupon_name": "C"}'),
    ("an escape sequence", "claim", b'{"user_id": "\\u001b[31m", "coupon_name": "C"}'),
    ("a deeply nested array", "create", b"[" * NESTED + b"]" * NESTED),
    ("a deeply nested unknown field", "create",
     b'{"name": "A", "amount": 1, "x": ' + b"[" * NESTED + b"]" * NESTED + b"}"),
    ("deeply nested objects", "claim", b'{"a":' * 5_000 + b"1" + b"}" * 5_000),
    ("JSON null", "create", b"null"),
    ("a JSON number", "claim", b"12"),
    ("JSON true", "create", b"true"),
    ("an empty body", "create", b""),
    ("only white space", "claim", b"  \n\t "),
    ("two JSON documents", "create", b'{"name": "A", "amount": 1}{"name": "B", "amount": 1}'),
    ("trailing garbage", "claim", b'{"user_id": "u", "coupon_name": "C"} x'),
    ("amount as a huge float", "create", b'{"name": "A", "amount": 1e400}'),
    ("amount as NaN", "create", b'{"name": "A", "amount": NaN}'),
    ("amount as -2^64", "create", b'{"name": "A", "amount": -18446744073709551616}'),
    ("amount as 2^64 - 1", "create", b'{"name": "A", "amount": 18446744073709551615}'),
    ("amount as an array", "create", b'{"name": "A", "amount": [1]}'),
    ("amount as an object", "create", b'{"name": "A", "amount": {"v": 1}}'),
    ("a name with %2F", "create", b'{"name": "A%2FB", "amount": 1}'),
    ("a name with a backslash", "create", b'{"name": "A\\\\B", "amount": 1}'),
    ("a Cyrillic look-alike name", "create", '{"name": "\u0410BC", "amount": 1}'.encode()),
    ("a full-width look-alike name", "create", '{"name": "\uff21BC", "amount": 1}'.encode()),
    ("a name of white space", "create", b'{"name": "   ", "amount": 1}'),
    ("a name with a trailing newline", "create", b'{"name": "ABC\\n", "amount": 1}'),
    ("a user id of white space", "claim", b'{"user_id": "   ", "coupon_name": "C"}'),
    ("a user id with a trailing newline", "claim", b'{"user_id": "u\\n", "coupon_name": "C"}'),
    ("a coupon name with a trailing newline", "claim", b'{"user_id": "u", "coupon_name": "C\\n"}'),
    ("a user id of non-breaking spaces", "claim",
     '{"user_id": "\u00a0\u3000", "coupon_name": "C"}'.encode()),
    ("a user id with a line separator", "claim", b'{"user_id": "a\\u2028", "coupon_name": "C"}'),
    ("a coupon name with a look-alike", "claim",
     '{"user_id": "u", "coupon_name": "\u0421"}'.encode()),
    ("a repeated key", "claim", b'{"user_id": "u", "coupon_name": "C", "user_id": "v"}'),
    ("a repeated key, escaped", "create", b'{"name": "A", "amount": 1, "amoun\\u0074": 2}'),
    ("an unknown field in an admin body", "create", b'{"name": "A", "amount": 1, "stock": 9}'),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "endpoint", "body"), HOSTILE_BODIES, ids=[case[0] for case in HOSTILE_BODIES]
)
async def test_a_hostile_body_gets_a_clean_400_and_changes_nothing(
    client: Client, db: asyncpg.Connection[Any], what: str, endpoint: str, body: bytes
) -> None:
    await create_coupon(client, "C", 5)
    path = "/api/coupons/claim" if endpoint == "claim" else "/api/coupons"
    response = await client.post(path, content=body, headers=JSON)
    assert_clean_error(response, 400, "invalid_request")
    assert await db.fetchval("SELECT count(*) FROM coupons") == 1
    assert await db.fetchval("SELECT count(*) FROM claims") == 0


async def test_a_10_mb_body_is_refused_as_too_large(client: Client) -> None:
    body = b'{"name": "BIG", "amount": 1, "pad": "' + b"x" * 10_000_000 + b'"}'
    response = await client.post("/api/coupons", content=body, headers=JSON)
    assert_clean_error(response, 413, "payload_too_large")


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "text/json",
        "application/xml",
        "application/json-patch",
        "application/javascript",
    ],
)
async def test_a_body_declared_as_another_type_is_unsupported(
    client: Client, content_type: str
) -> None:
    response = await client.post(
        "/api/coupons",
        content=b'{"name": "A", "amount": 1}',
        headers={"content-type": content_type},
    )
    assert_clean_error(response, 415, "unsupported_media_type")


async def test_a_json_body_without_a_content_type_is_accepted_as_json(client: Client) -> None:
    response = await client.post("/api/coupons", content=b'{"name": "A", "amount": 1}')
    assert response.status_code == 201


NAMES_IN_PATHS = [
    "A%2FB",  # an encoded slash: one segment, not a route
    "A%00B",  # NUL, which PostgreSQL text cannot hold
    "%FF%FE",  # not UTF-8
    "a%20b",
    "%E2%80%AE",  # right-to-left override
    "%D0%90BC",  # Cyrillic look-alike of ABC
    "x" * 10_000,
    "%20",
    "..",
    "%2E%2E",
]


@pytest.mark.parametrize("name", NAMES_IN_PATHS, ids=lambda name: name[:12])
async def test_reading_a_malformed_coupon_name_is_not_found(client: Client, name: str) -> None:
    await create_coupon(client, "ABC", 5)
    response = await client.get(f"/api/coupons/{name}")
    assert response.status_code in (404, 400), response.text
    assert response.json()["error"] in ("coupon_not_found", "not_found", "invalid_request")
    for leak in LEAKS:
        assert leak not in response.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PATCH", "/api/coupons"),
        ("PUT", "/api/coupons/claim"),
        ("DELETE", "/api/coupons/claim"),
        ("POST", "/health"),
        ("POST", "/api/coupons/X"),
        ("TRACE", "/api/coupons"),
        ("GET", "/api/coupons/claim/extra"),
        ("GET", "/%00"),
        ("GET", "/api/coupons/A/B"),
    ],
)
async def test_unknown_routes_and_methods_never_fail_the_server(
    client: Client, method: str, path: str
) -> None:
    response = await client.request(method, path)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"] in ("not_found", "method_not_allowed", "coupon_not_found")


async def test_a_10000_character_user_id_is_refused_without_echoing_it(client: Client) -> None:
    await create_coupon(client, "C", 5)
    user = "u" * 10_000
    response = await client.post("/api/coupons/claim", json={"user_id": user, "coupon_name": "C"})
    assert_clean_error(response, 400, "invalid_request")
    assert user not in response.text
