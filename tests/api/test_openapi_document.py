"""/openapi.json and /docs: an OpenAPI 3.1 document that names every status
and error code of every endpoint, and the interactive page."""

from __future__ import annotations

import re
from typing import Any

from tests.support.api import Client

CLAIM_CONFLICTS = {
    "already_claimed",
    "sold_out",
    "entries_closed",
    "raffle_drawn",
    "not_started",
    "sale_ended",
    "paused",
    "idempotency_key_in_use",
}
# A release and a redemption fail alike: both are an admin's change to one claim.
ONE_CLAIM_CHANGED: dict[str, set[str]] = {
    "401": {"unauthorized"},
    "404": {"coupon_not_found", "claim_not_found"},
    "409": {"already_redeemed", "idempotency_key_in_use"},
    "503": {"service_unavailable"},
}
# What each operation must document: status -> error codes named in it.
EXPECTED: dict[tuple[str, str], dict[str, set[str]]] = {
    ("post", "/api/coupons"): {
        "201": set(),
        "400": {"invalid_request"},
        "401": {"unauthorized"},
        "409": {"coupon_exists", "idempotency_key_in_use"},
        "413": {"payload_too_large"},
        "415": {"unsupported_media_type"},
        "503": {"service_unavailable"},
    },
    ("post", "/api/coupons/claim"): {
        "200": set(),
        "400": {"invalid_request"},
        "404": {"coupon_not_found"},
        "409": CLAIM_CONFLICTS,
        "413": {"payload_too_large"},
        "415": {"unsupported_media_type"},
        "503": {"service_unavailable"},
    },
    ("get", "/api/coupons/{name}"): {
        "200": set(),
        "404": {"coupon_not_found"},
        "503": {"service_unavailable"},
    },
    ("patch", "/api/coupons/{name}"): {
        "200": set(),
        "400": {"invalid_request"},
        "401": {"unauthorized"},
        "404": {"coupon_not_found"},
        "409": {"amount_below_claimed", "idempotency_key_in_use"},
        "413": {"payload_too_large"},
        "415": {"unsupported_media_type"},
        "503": {"service_unavailable"},
    },
    ("get", "/api/coupons/{name}/claims/{user_id}"): {
        "200": set(),
        "404": {"coupon_not_found", "claim_not_found"},
        "503": {"service_unavailable"},
    },
    ("delete", "/api/coupons/{name}/claims/{user_id}"): {"204": set(), **ONE_CLAIM_CHANGED},
    ("post", "/api/coupons/{name}/claims/{user_id}/redeem"): {"200": set(), **ONE_CLAIM_CHANGED},
    ("get", "/api/users/{user_id}/claims"): {
        "200": set(),
        "400": {"invalid_request"},
        "503": {"service_unavailable"},
    },
    ("get", "/health"): {"200": set(), "503": {"service_unavailable"}},
    ("get", "/metrics"): {"200": set()},
}


async def openapi(client: Client) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


async def test_the_schema_is_openapi_3_1_with_every_endpoint(client: Client) -> None:
    document = await openapi(client)
    assert document["openapi"].startswith("3.1")
    for method, path in EXPECTED:
        assert method in document["paths"][path], (method, path)


async def test_each_endpoint_documents_each_status_and_error_code(client: Client) -> None:
    paths = (await openapi(client))["paths"]
    for (method, path), statuses in EXPECTED.items():
        responses = paths[path][method]["responses"]
        assert set(statuses) <= set(responses), (method, path, sorted(responses))
        for status, codes in statuses.items():
            for code in codes:
                assert code in responses[status]["description"], (method, path, status, code)


async def test_error_responses_have_the_error_body_schema(client: Client) -> None:
    document = await openapi(client)
    error = document["components"]["schemas"]["ErrorResponse"]
    assert set(error["required"]) == {"error", "message"}
    conflict = document["paths"]["/api/coupons/claim"]["post"]["responses"]["409"]
    schema = conflict["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/ErrorResponse"}
    examples = conflict["content"]["application/json"]["examples"].values()
    assert {example["value"]["error"] for example in examples} == CLAIM_CONFLICTS


KEYED = [
    ("post", "/api/coupons"),
    ("post", "/api/coupons/claim"),
    ("patch", "/api/coupons/{name}"),
    ("delete", "/api/coupons/{name}/claims/{user_id}"),
    ("post", "/api/coupons/{name}/claims/{user_id}/redeem"),
]


async def test_every_state_changing_route_documents_the_idempotency_key(client: Client) -> None:
    paths = (await openapi(client))["paths"]
    for method, path in KEYED:
        operation = paths[path][method]
        headers = [p for p in operation["parameters"] if p["in"] == "header"]
        assert [p["name"] for p in headers] == ["Idempotency-Key"], (method, path)
        assert headers[0]["schema"]["maxLength"] == 255
        responses = operation["responses"]
        assert "idempotency_key_reused" in responses["422"]["description"], (method, path)
        assert "idempotency_key_in_use" in responses["409"]["description"], (method, path)
        assert "invalid_request" in responses["400"]["description"], (method, path)
        success = next(s for s in responses if s.startswith("2"))
        assert "Idempotent-Replayed" in responses[success]["headers"], (method, path)


async def test_the_raw_body_handlers_document_their_request_bodies(client: Client) -> None:
    paths = (await openapi(client))["paths"]
    create = paths["/api/coupons"]["post"]["requestBody"]["content"]["application/json"]
    assert create["schema"]["required"] == ["name", "amount"]
    assert create["schema"]["properties"]["amount"]["maximum"] == 2_147_483_647
    claim = paths["/api/coupons/claim"]["post"]["requestBody"]["content"]["application/json"]
    assert claim["schema"]["required"] == ["user_id", "coupon_name"]


async def test_a_503_documents_retry_after_and_every_response_the_request_id(
    client: Client,
) -> None:
    paths = (await openapi(client))["paths"]
    claim = paths["/api/coupons/claim"]["post"]["responses"]
    assert claim["503"]["headers"]["Retry-After"]["required"] is True
    for item in paths.values():
        for operation in item.values():
            for response in operation["responses"].values():
                assert "X-Request-ID" in response["headers"]


async def test_the_admin_route_declares_its_bearer_token(client: Client) -> None:
    document = await openapi(client)
    create = document["paths"]["/api/coupons"]["post"]
    assert create["security"] == [{"adminToken": []}]
    scheme = document["components"]["securitySchemes"]["adminToken"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}


async def test_no_response_documents_litestars_own_error_body(client: Client) -> None:
    paths = (await openapi(client))["paths"]
    for item in paths.values():
        for operation in item.values():
            for response in operation["responses"].values():
                for media in response.get("content", {}).values():
                    assert "status_code" not in str(media.get("schema")), operation["summary"]


async def test_the_docs_page_is_html(client: Client) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "swagger" in response.text.lower()


async def test_the_docs_page_loads_nothing_from_another_host(client: Client) -> None:
    page = (await client.get("/docs")).text
    links = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', page)
    assert len(links) >= 4  # script, preset, stylesheet, icon
    for link in links:
        assert link.startswith("/docs/assets/"), link
        asset = await client.get(link)
        assert asset.status_code == 200, link
        assert "max-age" in asset.headers["cache-control"]


async def test_an_unknown_docs_asset_is_a_json_404(client: Client) -> None:
    response = await client.get("/docs/assets/no-such-file.js")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def test_the_schema_validates_against_the_openapi_3_1_meta_schema(client: Client) -> None:
    from schemathesis.specs.openapi import definitions

    errors = list(definitions.OPENAPI_31_VALIDATOR.iter_errors(await openapi(client)))
    assert errors == []
