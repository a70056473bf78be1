"""decode_json refuses a repeated key anywhere in a body, whichever path
(the claim's colon count or the full parse) decides it."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flashsale.http.errors import InvalidRequest
from flashsale.http.requests import CLAIM, CLAIM_KEYS, CREATE_COUPON, decode_json

keys = st.text(min_size=1, max_size=8)
scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=12)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)


def with_repeat(extra: dict[str, Any], key: str, path: list[str]) -> bytes:
    """A claim body with ``extra``, and an object at ``path`` under it that
    repeats ``key``."""
    inner = json.dumps(key) + ": 1"
    target = json.dumps({"__here__": 0})[1:-1]  # the placeholder's member
    nested: dict[str, Any] = {"__here__": 0}
    for step in reversed(path):
        nested = {step: nested}
    body = json.dumps({"user_id": "u", "coupon_name": "C", "extra": {**extra, "_": nested}})
    return body.replace(target, f"{inner}, {inner}").encode()


@given(extra=st.dictionaries(keys, values, max_size=3), key=keys, path=st.lists(keys, max_size=3))
def test_a_repeat_anywhere_in_a_claim_is_refused(
    extra: dict[str, Any], key: str, path: list[str]
) -> None:
    with pytest.raises(InvalidRequest, match="repeats the key"):
        decode_json(with_repeat(extra, key, path), CLAIM, required_keys=CLAIM_KEYS)


@given(extra=st.dictionaries(keys, values, max_size=3), user=st.text(min_size=1, max_size=20))
def test_a_claim_without_repeats_decodes_as_msgspec_does(extra: dict[str, Any], user: str) -> None:
    body = json.dumps({"user_id": user, "coupon_name": "C", **extra}).encode()
    try:
        expected = CLAIM.decode(body)
    except msgspec.ValidationError:
        return  # a user id its rule refuses: not this test's subject
    assert decode_json(body, CLAIM, required_keys=CLAIM_KEYS) == expected


def test_an_admin_body_repeating_a_key_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="repeats the key 'amount'"):
        decode_json(b'{"name": "A", "amount": 1, "amount": 2}', CREATE_COUPON)
