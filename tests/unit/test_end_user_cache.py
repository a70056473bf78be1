"""The verified-token cache (http/end_users.py) is bounded by JWT_CACHE_MAX
and spares a remembered token its signature check until its expiry."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from flashsale.config import load_settings
from flashsale.http.end_users import EndUsers, Refused
from tests.support.jwts import jwt_settings, mint, write_public_key


def test_the_cache_holds_at_most_jwt_cache_max_tokens(tmp_path: Path) -> None:
    settings = load_settings(
        {**jwt_settings(key_file=write_public_key(tmp_path)), "JWT_CACHE_MAX": "3"}
    )
    users = EndUsers(settings)
    for number in range(10):
        assert users.verify(mint(f"user-{number}"), None).subject == f"user-{number}"
        assert users.cached <= 3
    assert users.cached == 3


def test_a_remembered_token_is_not_verified_again_until_it_expires(tmp_path: Path) -> None:
    settings = load_settings(jwt_settings(key_file=write_public_key(tmp_path)))
    users = EndUsers(settings)
    remembered = mint("alice")
    short = mint("bob", exp=int(time.time()) + 2)
    users.verify(remembered, "10.0.0.1")
    users.verify(short, None)
    users.use_keys({})  # no key left: only a remembered token can pass
    caller = users.verify(remembered, "10.0.0.2")
    assert (caller.subject, caller.address) == ("alice", "10.0.0.2")
    with pytest.raises(Refused):
        users.verify(mint("carol"), None)
    time.sleep(2.5)  # bob's token has expired: the cache must not outlive it
    with pytest.raises(Refused):
        users.verify(short, None)
