"""The access settings refuse what would open a door (config.py), and token
lists name their entries (http/credentials.py) so that logs and events can
say which credential acted without showing it."""

from __future__ import annotations

import pytest

from flashsale.config import SettingsError, load_settings
from flashsale.http.credentials import match, parse_tokens
from flashsale.logs import public_settings

JWT = {"JWT_JWKS_URL": "http://127.0.0.1:1/jwks.json", "JWT_ISSUER": "i", "JWT_AUDIENCE": "a"}


@pytest.mark.parametrize(
    ("environment", "named"),
    [
        ({**JWT, "JWT_ALGORITHMS": "RS256,none"}, "none"),
        ({**JWT, "JWT_ALGORITHMS": "HS256"}, "HS256"),
        ({"CLAIM_AUTH": "user"}, "CLAIM_AUTH=user"),
        ({"JWT_JWKS_URL": "http://127.0.0.1:1/j"}, "JWT_ISSUER"),
        ({**JWT, "JWT_HMAC_SECRET": "short"}, "JWT_HMAC_SECRET"),
        ({**JWT, "JWT_PUBLIC_KEY_FILE": "/k.pem"}, "not both"),
        ({"CLAIM_AUTH": "everyone"}, "CLAIM_AUTH"),
        ({"BACKEND_TOKEN": "admin-open:s3cret-0123"}, "admin-open"),
    ],
)
def test_settings_that_would_open_a_door_are_refused(
    environment: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(environment)


def test_token_lists_name_each_entry_and_match_in_full() -> None:
    tokens = parse_tokens(" ops:s3cret-one , s3cret-two,,", "admin")
    assert [t.name for t in tokens] == ["ops", "admin-2"]
    assert match(tokens, b"s3cret-one") == "ops"
    assert match(tokens, b"s3cret-two") == "admin-2"
    assert match(tokens, b"s3cret") is None
    assert match(tokens, b"ops:s3cret-one") is None


def test_the_start_up_line_shows_no_token_nor_secret() -> None:
    settings = load_settings(
        {"ADMIN_TOKEN": "a:tok-1", "BACKEND_TOKEN": "tok-2", "JWT_HMAC_SECRET": "x" * 40, **JWT}
    )
    shown = public_settings(settings)
    assert "tok-1" not in str(shown)
    assert "tok-2" not in str(shown)
    assert "x" * 40 not in str(shown)
    assert shown["backend_token_set"] is True
    assert shown["jwt_hmac_secret_set"] is True
