"""HS256 claim tokens (http/hs256.py) checked without jwt.decode: wherever
the fast path decides a token, it decides as PyJWT does (the same claims, or
the same exception, hence the same refusal message); where it does not
(padding, unusual headers, text msgspec and json might read apart), the
token goes to jwt.decode."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from flashsale.config import load_settings
from flashsale.http.end_users import EndUsers, Refused
from flashsale.http.hs256 import Hs256
from tests.support.jwts import (
    AUDIENCE,
    HMAC_SECRET,
    ISSUER,
    jwt_settings,
    mint,
    mint_hs256,
    write_public_key,
)

FAST = Hs256(HMAC_SECRET, ISSUER, AUDIENCE)
KEY = jwt.PyJWK(
    {"kty": "oct", "k": base64.urlsafe_b64encode(HMAC_SECRET.encode()).rstrip(b"=").decode()}
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


KEY = jwt.PyJWK({"kty": "oct", "k": b64(HMAC_SECRET.encode())})


def signed(header: bytes, payload: bytes, secret: str = HMAC_SECRET) -> str:
    signing_input = f"{b64(header)}.{b64(payload)}"
    mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def pyjwt(token: str) -> object:
    """What jwt.decode says, called as http/end_users.py calls it for HS256."""
    try:
        claims = jwt.decode(
            token,
            KEY,
            algorithms=["HS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=0,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
    except (jwt.PyJWTError, ValueError, TypeError) as error:
        return type(error)
    return (claims["sub"], claims["exp"])


def fast(token: str) -> object:
    try:
        claims = FAST.claims(token)
    except jwt.PyJWTError as error:
        return type(error)
    return None if claims is None else (claims.sub, claims.exp)


NOW = int(time.time())
ABSENT = object()
JSON: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)


def mostly(good: object, *others: object) -> st.SearchStrategy[Any]:
    """``good`` half of the time, else one of ``others`` (ABSENT: left out)."""
    return st.sampled_from([good] * len(others) + list(others))


TIMES = (NOW - 3600, str(NOW + 3600), NOW + 3600.5, True, None, "soon", [1], 1e300, ABSENT)
PLAIN_HEADER = {"alg": "HS256", "typ": "JWT"}
HEADERS = st.fixed_dictionaries(
    {"alg": mostly("HS256", "HS384", "RS256", "none", "hs256")},
    optional={
        "typ": st.sampled_from(["JWT", "jwt", "at+jwt", 1]),
        "kid": st.sampled_from(["k1", 5, None]),
        "crit": st.sampled_from([["b64"], [], ["exp"], "b64"]),
        "b64": st.booleans(),
        "cty": st.just("JWT"),
    },
)
CLAIMS = st.fixed_dictionaries(
    {
        "sub": mostly("alice", "bob-2", "", "\x00", 7, None, ["alice"], ABSENT),
        "iss": mostly(ISSUER, "https://evil.test/", None, 3, [ISSUER], ABSENT),
        "aud": mostly(
            AUDIENCE, [AUDIENCE, "x"], ["x"], "x", "", [], [AUDIENCE, 1], None, 0, {}, ABSENT
        ),
        "exp": mostly(NOW + 3600, *TIMES),
        "iat": mostly(ABSENT, NOW - 60, NOW + 3600, *TIMES),
        "nbf": mostly(ABSENT, NOW - 60, NOW + 3600, *TIMES),
        "jti": mostly(ABSENT, "j1", 9, None),
        "scope": st.just(ABSENT) | JSON,
    }
).map(lambda claims: {name: value for name, value in claims.items() if value is not ABSENT})
# Payload texts msgspec and the json module might read apart: each must go
# to jwt.decode or be decided as it decides.
ODD_PAYLOADS = [
    b'{"sub":"a","x":NaN}',
    b'{"sub":"a","x":Infinity}',
    b'{"sub":"a","x":"\\ud800"}',
    b'{"sub":"a","x":"\xff"}',
    b'{"sub":"a","x":"\xed\xa0\x80"}',
    b'\xef\xbb\xbf{"sub":"a"}',
    b'{"sub":"a","x":' + b"1" * 4400 + b"}",
    b'{"sub":"a","x":' + b"[" * 900 + b"]" * 900 + b"}",
    b'{"sub":"a","exp":1e400}',
    b'{"exp":1,"exp":99999999999,"sub":"a","iss":"' + ISSUER.encode() + b'","aud":"flashsale"}',
    b"[1,2]",
    b"",
]
TAMPERINGS: dict[str, Callable[[str], str]] = {
    "none": lambda token: token,
    "flipped signature": lambda token: token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:],
    "padded signature": lambda token: token + "=",
    "padded payload": lambda token: token.replace(".", "=.", 2).replace("=.", ".", 1),
    "non-canonical signature": lambda token: token[:-1] + chr(ord(token[-1]) ^ 1),
    "standard alphabet": lambda token: token.replace("-", "+").replace("_", "/"),
    "extra segment": lambda token: token + ".e30",
    "two segments": lambda token: token.rpartition(".")[0],
    "whitespace": lambda token: token[:5] + " " + token[5:],
    "non-ascii": lambda token: token + "\u00e9",
}


def agree(token: str) -> bool:
    """The fast path either passes the token on or decides it as PyJWT does;
    True when it decided."""
    decided = fast(token)
    if decided is not None:
        assert decided == pyjwt(token), token
    return decided is not None


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    header=st.just(PLAIN_HEADER) | HEADERS,
    claims=CLAIMS,
    secret=mostly(HMAC_SECRET, "another-secret-0123456789abcdefgh"),
    tampering=mostly("none", *sorted(TAMPERINGS)),
)
def test_the_fast_path_decides_generated_tokens_as_pyjwt_does(
    header: dict[str, Any], claims: dict[str, Any], secret: str, tampering: str
) -> None:
    token = TAMPERINGS[tampering](
        signed(json.dumps(header).encode(), json.dumps(claims).encode(), secret)
    )
    decided = fast(token)
    event("passed on" if decided is None else getattr(decided, "__name__", "accepted"))
    agree(token)


@settings(max_examples=200, deadline=None)
@given(payload=st.sampled_from(ODD_PAYLOADS) | st.binary(max_size=64))
def test_payloads_json_and_msgspec_might_read_apart_are_decided_as_pyjwt_does(
    payload: bytes,
) -> None:
    agree(signed(b'{"alg":"HS256","typ":"JWT"}', payload))


def test_the_plain_shape_is_decided_by_the_fast_path() -> None:
    """Not vacuous: the usual tokens, good and bad, take the fast path."""
    assert agree(mint_hs256("alice"))
    # mint_hs256's exp is an hour from when it mints, not from NOW (the
    # module's import, maybe minutes before this test in a whole run).
    expected = int(time.time()) + 3600
    assert fast(mint_hs256("alice")) == ("alice", pytest.approx(expected, abs=60))
    for bad in (
        mint_hs256("alice", exp=NOW - 60),
        mint_hs256("alice", aud="x"),
        mint_hs256("alice", iss="x"),
        mint_hs256("alice", secret="another-secret-0123456789abcdefgh"),
        mint_hs256("alice", nbf=NOW + 3600),
        mint_hs256("alice", aud=["x", AUDIENCE]),
    ):
        assert agree(bad)
    assert fast(mint_hs256("alice", exp=NOW - 60)) is jwt.ExpiredSignatureError
    for passed_on in (
        mint_hs256("alice") + "=",
        signed(b'{"alg":"HS256","typ":"at+jwt"}', b'{"sub":"a"}'),
        signed(b'{"alg":"HS384"}', b'{"sub":"a"}'),
        signed(b'{"alg":"HS256","crit":["b64"],"b64":false}', b'{"sub":"a"}'),
        mint("alice"),
    ):
        assert fast(passed_on) is None


@pytest.fixture
def users(tmp_path: Path) -> EndUsers:
    return EndUsers(load_settings(jwt_settings(key_file=write_public_key(tmp_path))))


REFUSALS = {
    "bad signature": lambda: mint_hs256("a", secret="another-secret-0123456789abcdefgh"),
    "expired": lambda: mint_hs256("a", exp=NOW - 60),
    "wrong audience": lambda: mint_hs256("a", aud=["x"]),
    "wrong issuer": lambda: mint_hs256("a", iss="https://evil.test/"),
    "a required claim is missing": lambda: mint_hs256("a", exp=None),
    "malformed": lambda: mint_hs256("a", nbf=NOW + 3600),
}


@pytest.mark.parametrize("reason", REFUSALS)
def test_a_refused_hs256_token_is_worded_as_before(users: EndUsers, reason: str) -> None:
    with pytest.raises(Refused) as refused:
        users.verify(REFUSALS[reason](), None)
    assert str(refused.value) == f"the bearer token is not valid ({reason})"


def test_a_plain_hs256_token_never_reaches_jwt_decode(
    users: EndUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    decode = jwt.decode

    def counted(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counted)
    assert users.verify(mint_hs256("carol"), None).subject == "carol"
    with pytest.raises(Refused, match="not a valid user id"):
        users.verify(mint_hs256("\x00"), None)
    assert calls == []
    padded = mint_hs256("dave") + "="  # PyJWT accepts trailing padding: so do we
    assert users.verify(padded, None).subject == "dave"
    assert users.verify(mint("erin"), None).subject == "erin"
    assert len(calls) == 2


def test_a_far_exp_is_remembered_without_overflowing(users: EndUsers) -> None:
    """PyJWT takes any exp int() takes; the cache's float() of 10**400 used to
    overflow (a 500)."""
    far = mint_hs256("frank", exp=10**400)
    assert users.verify(far, None).subject == "frank"
    assert users.verify(far, None).subject == "frank"  # remembered


def test_a_secret_longer_than_a_block_signs_as_hmac_does() -> None:
    """RFC 2104: a key longer than SHA-256's 64-byte block is hashed first
    (the fast path keeps HMAC's inner and outer states: the same digest)."""
    secret = "s" * 100 + "\u00e9"
    fast_path = Hs256(secret, ISSUER, AUDIENCE)
    claims = fast_path.claims(mint_hs256("alice", secret=secret))
    assert claims is not None
    assert claims.sub == "alice"
    with pytest.raises(jwt.InvalidSignatureError):
        fast_path.claims(mint_hs256("alice", secret=secret[:-1]))
