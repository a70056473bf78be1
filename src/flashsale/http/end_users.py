"""End users' JWTs, verified with PyJWT against keys held in memory.

A token is checked once (signature, ``exp``, ``iss``, ``aud``, ``sub``) and
remembered until its ``exp`` in a bounded cache, so a user's repeated
requests pay the signature once. No network call is ever made here: keys
come from JWT_PUBLIC_KEY_FILE at start-up or from the JWKS refresher
(http/jwks.py), which runs beside the requests; a token whose ``kid`` is not
(yet) known is refused and asks the refresher for one fetch.

The algorithm decides the key, never the reverse: HS256 is checked only
with JWT_HMAC_SECRET and only when it is set; every other accepted
algorithm (JWT_ALGORITHMS, asymmetric only, config.py) only with a public
key. ``none`` is never accepted. An HS256 token of the plain shape the
shop's backend mints is checked by http/hs256.py (the same checks and
refusals in a few microseconds instead of jwt.decode's 65); any other token
goes to jwt.decode."""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import jwt
import msgspec
from jwt.algorithms import get_default_algorithms

from flashsale.config import Settings, jwt_algorithms
from flashsale.domain import Caller, CallerKind
from flashsale.http.hs256 import Hs256
from flashsale.http.schemas import UserId

MAX_TOKEN_BYTES = 8192  # a longer bearer is refused unread
HMAC = "HS256"
LEEWAY_SECONDS = 0


class Refused(Exception):
    """The token does not prove an end user; the message says why (no secret)."""


class EndUsers:
    """Verifies end users' tokens; one per worker."""

    def __init__(self, settings: Settings, on_unknown_kid: Callable[[], None] = lambda: None):
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._algorithms = jwt_algorithms(settings)
        self._hmac = _hmac_key(settings.jwt_hmac_secret)
        self._hs256 = _hs256(settings)
        self._cache_max = settings.jwt_cache_max
        self._cache: OrderedDict[str, tuple[Caller, float]] = OrderedDict()
        self._keys: dict[str | None, Any] = {}  # kid -> prepared key (None: no kid)
        self._on_unknown_kid = on_unknown_kid
        if settings.jwt_public_key_file is not None:
            self._keys = {None: _pem_keys(settings.jwt_public_key_file, self._algorithms)}

    def use_keys(self, keys: dict[str | None, Any]) -> None:
        """The JWKS refresher's latest keys (kid -> PyJWK)."""
        self._keys = keys

    def set_unknown_kid_hook(self, hook: Callable[[], None]) -> None:
        self._on_unknown_kid = hook

    @property
    def cached(self) -> int:
        return len(self._cache)

    def verify(self, token: str, address: str | None) -> Caller:
        """The end user ``token`` proves, or Refused."""
        hit = self._cache.get(token)
        if hit is not None and hit[1] > time.time():
            caller = hit[0]
            return caller if caller.address == address else _at(caller, address)
        subject, expires = self._decode(token)
        caller = Caller(CallerKind.USER, subject=subject, address=address)
        self._remember(token, caller, expires)
        return caller

    def _remember(self, token: str, caller: Caller, expires: float) -> None:
        # Full: the oldest entry goes (a scan for the expired ones would cost
        # every new token the whole cache). An OrderedDict pops it in O(1);
        # a dict's first key is found past the holes earlier deletions left,
        # slower the longer the cache has been full (docs/benchmarks.md,
        # "Issue 24: HS256 claim tokens"). An expired entry still held is
        # never used: verify checks its expiry.
        if len(self._cache) >= self._cache_max:
            self._cache.popitem(last=False)
        self._cache[token] = (caller, expires)

    def _decode(self, token: str) -> tuple[str, float]:
        """The token's ``sub`` and ``exp``, or Refused."""
        if len(token) > MAX_TOKEN_BYTES:
            raise Refused("the bearer token is too long")
        if self._hs256 is not None:
            try:
                plain = self._hs256.claims(token)
            except jwt.PyJWTError as error:
                raise Refused(f"the bearer token is not valid ({_reason(error)})") from None
            if plain is not None:
                return _checked(plain.sub, plain.exp)
        claims = self._pyjwt_decode(token)
        return _checked(claims["sub"], claims["exp"])

    def _pyjwt_decode(self, token: str) -> dict[str, Any]:
        header = _header(token)
        algorithm = header.get("alg")
        key = self._key_for(algorithm, header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[str(algorithm)],
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as error:
            raise Refused(f"the bearer token is not valid ({_reason(error)})") from None
        return claims

    def _key_for(self, algorithm: object, kid: object) -> Any:
        if algorithm == HMAC and self._hmac is not None:
            return self._hmac
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            raise Refused(f"the token's algorithm {str(algorithm)[:16]!r} is not accepted")
        if kid is not None and not isinstance(kid, str):
            raise Refused("the token's kid is not a string")
        found = self._keys.get(kid)
        if found is None and kid is None and len(self._keys) == 1:
            found = next(iter(self._keys.values()))
        if found is None:
            self._on_unknown_kid()
            raise Refused("the token's key is not known (yet): try again shortly")
        if isinstance(found, dict):  # PEM: one prepared key per algorithm
            return found.get(algorithm) or _refuse_algorithm(algorithm)
        return found.key


_HEADER = msgspec.json.Decoder(dict[str, object])


def _header(token: str) -> dict[str, object]:
    """The token's header, read to pick the key (PyJWT then checks it all:
    its own header parse would be a second pass over the token)."""
    segment = token.partition(".")[0]
    try:
        return _HEADER.decode(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise Refused("the bearer token is not a valid token") from None


def _hmac_key(secret: str | None) -> jwt.PyJWK | None:
    """JWT_HMAC_SECRET as a prepared HS256 key (PyJWT skips preparing a
    PyJWK's key on every decode)."""
    if secret is None:
        return None
    k = base64.urlsafe_b64encode(secret.encode()).rstrip(b"=").decode()
    return jwt.PyJWK({"kty": "oct", "k": k, "alg": HMAC})


def _hs256(settings: Settings) -> Hs256 | None:
    secret = settings.jwt_hmac_secret
    if secret is None or settings.jwt_issuer is None or settings.jwt_audience is None:
        return None
    try:
        return Hs256(secret, settings.jwt_issuer, settings.jwt_audience)
    except jwt.InvalidKeyError:  # jwt.decode refuses every token for such a secret
        return None


def _checked(sub: Any, exp: Any) -> tuple[str, float]:
    """``sub`` as a user id, and ``exp`` (an integer to PyJWT: it took int(exp))
    as the cache's expiry, capped so that float() cannot overflow."""
    _check_subject(sub)
    return str(sub), float(min(int(exp), 2**53))


def _refuse_algorithm(algorithm: str) -> Any:
    raise Refused(f"the configured key cannot verify {algorithm}")


# UserId's own rules (length, then its pattern, which msgspec applies with
# re.search), applied directly: msgspec.convert of the ``sub`` cost a dict
# and a Struct per new token (docs/benchmarks.md, "Issue 24").
_USER_ID: msgspec.Meta = get_args(UserId)[1]
_USER_ID_PATTERN = re.compile(_USER_ID.pattern or "")


def _check_subject(subject: object) -> None:
    if not (
        isinstance(subject, str)
        and (_USER_ID.min_length or 0) <= len(subject) <= (_USER_ID.max_length or len(subject))
        and _USER_ID_PATTERN.search(subject)
    ):
        raise Refused("the token's sub is not a valid user id")


def _at(caller: Caller, address: str | None) -> Caller:
    return Caller(caller.kind, caller.name, caller.subject, address)


def _reason(error: Exception) -> str:
    return {
        jwt.ExpiredSignatureError: "expired",
        jwt.InvalidIssuerError: "wrong issuer",
        jwt.InvalidAudienceError: "wrong audience",
        jwt.InvalidSignatureError: "bad signature",
        jwt.MissingRequiredClaimError: "a required claim is missing",
    }.get(type(error), "malformed")


def _pem_keys(path: Path, algorithms: frozenset[str]) -> dict[str, Any]:
    """The PEM public key prepared once for each accepted algorithm it fits."""
    pem = path.read_bytes()
    prepared: dict[str, Any] = {}
    for name, algorithm in get_default_algorithms().items():
        if name in algorithms:
            try:
                prepared[name] = algorithm.prepare_key(pem)
            except (jwt.InvalidKeyError, ValueError, TypeError):
                continue
    if not prepared:
        raise ValueError(f"JWT_PUBLIC_KEY_FILE: no key for {', '.join(sorted(algorithms))}")
    return prepared
