"""HS256 claim tokens (JWT_HMAC_SECRET) checked without ``jwt.decode``'s
per-character walk over each base64url segment.

PyJWT 2.15 spends most of an HS256 token's time validating the segments
character by character in Python and preparing the key again on every
call, far more than the HMAC itself (docs/benchmarks.md has the figures).
This path does the same checks
for the shape the shop's backend mints, verifies the signature as PyJWT's
``HMACAlgorithm`` does (HMAC-SHA256 of the key PyJWT's ``prepare_key``
accepts, compared in constant time) from the key's inner and outer SHA-256
states prepared once and copied per token, and raises PyJWT's own exceptions,
so end_users.py words a refusal the same way whichever path refused.

The shape decided here: exactly three segments, each canonical unpadded
base64url; a header with ``alg`` exactly "HS256", ``typ`` absent or "JWT",
``kid`` absent or a string, no ``crit`` and no ``b64``; a payload that is
UTF-8 JSON of bounded size and nesting. Anything else (padding, unusual
headers, text that msgspec and the json module PyJWT uses might read
differently: NaN, lone surrogates, deep nesting, huge numbers) is not
decided here: ``claims`` returns None and the token goes to ``jwt.decode``,
the verifier of record (tests/unit/test_hs256_tokens.py holds both paths to
the same answers)."""

from __future__ import annotations

import binascii
import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Any

import msgspec
from jwt import exceptions as errors
from jwt.algorithms import HMACAlgorithm

if TYPE_CHECKING:
    from _hashlib import HASH

MAX_HEADER_CHARS = 256  # {"alg":"HS256","typ":"JWT"} is 36
# 4,096 base64 characters are 3,072 bytes: no number there reaches the
# json module's 4,300-digit limit, which msgspec does not share.
MAX_PAYLOAD_CHARS = 4096
# msgspec and json give up on deep nesting at different depths (both count
# the caller's stack): a payload with more brackets goes to PyJWT.
MAX_BRACKETS = 64
MAX_PLAIN_HEADERS = 16  # header segments remembered as plain, per worker
SIGNATURE_CHARS = 43  # an HMAC-SHA256 (32 bytes) in unpadded base64
UNSET: Any = msgspec.UNSET

# The url-safe alphabet mapped onto the standard one; "+", "/" and "=" are
# not base64url, so they become "!" which binascii's strict mode refuses.
_TO_STANDARD = bytes.maketrans(b"-_+/=", b"+/!!!")
_PADDING = (b"", b"", b"==", b"=")
# PyJWT refuses a segment that does not re-encode to itself: the unused low
# bits of the last character must be zero (RFC 4648 3.5).
_CANONICAL_LAST = (b"", b"", b"AQgw", b"AEIMQUYcgkosw048")


class Header(msgspec.Struct):
    alg: Any = UNSET
    typ: Any = UNSET
    kid: Any = UNSET
    crit: Any = UNSET
    b64: Any = UNSET


class Claims(msgspec.Struct):
    """The registered claims PyJWT checks; others are skipped unread."""

    exp: Any = UNSET
    iss: Any = UNSET
    aud: Any = UNSET
    sub: Any = UNSET
    iat: Any = UNSET
    nbf: Any = UNSET
    jti: Any = UNSET


_HEADER = msgspec.json.Decoder(Header)
_CLAIMS = msgspec.json.Decoder(Claims)


class Hs256:
    """Checks HS256 tokens signed with one secret for one issuer and audience."""

    def __init__(self, secret: str, issuer: str, audience: str) -> None:
        algorithm = HMACAlgorithm(HMACAlgorithm.SHA256)
        key = algorithm.prepare_key(secret)  # InvalidKeyError: caller decides
        # HMACAlgorithm.sign is hmac.new(key, msg, hashlib.sha256).digest():
        # the same HMAC from the key's inner and outer hash states, computed
        # once; per token a copy of each is four C calls, where hmac.new sets
        # up the key again and hmac.HMAC's copy, update and digest are Python.
        self._inner, self._outer = _keyed_states(key)
        self._issuer = issuer
        self._audience = audience
        # Header segments already found plain: the backend mints one header
        # for every token, so its decode and checks run once, not per token
        # (a segment's verdict is a function of its text alone).
        self._plain_headers: set[bytes] = set()

    def claims(self, token: str) -> Claims | None:
        """The token's checked claims; a PyJWT exception saying why it is
        refused; or None when the token is not of the plain shape."""
        parts = self._segments(token)
        if parts is None:
            return None
        signing_input, payload, signature = parts
        mac = self._sign(signing_input)
        # The canonical encoding of the expected signature against the
        # segment, in constant time: equal only for the right signature
        # canonically encoded. Otherwise the segment is decoded to tell a
        # wrong signature from a malformed one (passed on, as before).
        expected = binascii.b2a_base64(mac, newline=False)[:SIGNATURE_CHARS]
        if not hmac.compare_digest(signature, expected):
            signature_bytes = _base64(signature)
            if signature_bytes is None:
                return None
            if not hmac.compare_digest(signature_bytes, mac):
                raise errors.InvalidSignatureError("Signature verification failed")
        claims = _claims(payload)
        if claims is not None:
            check(claims, self._issuer, self._audience, time.time())
        return claims

    def _sign(self, signing_input: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(signing_input)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def _segments(self, token: str) -> tuple[bytes, bytes, bytes] | None:
        """The signing input, the decoded payload and the signature segment
        (mapped by _TO_STANDARD, not decoded); None unless the header is
        plain and the payload canonical base64url."""
        if not token.isascii():
            return None
        raw = token.encode()
        parts = raw.translate(_TO_STANDARD).split(b".")  # one pass for the three
        if len(parts) != 3:
            return None
        header, payload, signature = parts
        if len(payload) > MAX_PAYLOAD_CHARS or not self._plain_header(header):
            return None
        payload_bytes = _base64(payload)
        if payload_bytes is None:
            return None
        return raw[: len(header) + 1 + len(payload)], payload_bytes, signature

    def _plain_header(self, header: bytes) -> bool:
        if header in self._plain_headers:
            return True
        if len(header) > MAX_HEADER_CHARS:
            return False
        decoded = _base64(header)
        if decoded is None or not _plain(decoded):
            return False
        if len(self._plain_headers) < MAX_PLAIN_HEADERS:
            self._plain_headers.add(header)
        return True


def _keyed_states(key: bytes) -> tuple[HASH, HASH]:
    """SHA-256 fed the key XOR ipad and XOR opad (RFC 2104, as the hmac
    module's own fallback builds them)."""
    block = hashlib.sha256().block_size
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\0")
    return hashlib.sha256(key.translate(hmac.trans_36)), hashlib.sha256(
        key.translate(hmac.trans_5C)
    )


def _base64(segment: bytes) -> bytes | None:
    """A base64url segment mapped by _TO_STANDARD, decoded strictly: the
    alphabet only, no padding, the last character canonical."""
    rest = len(segment) % 4
    if rest == 1 or (rest and segment[-1] not in _CANONICAL_LAST[rest]):
        return None
    try:
        return binascii.a2b_base64(segment + _PADDING[rest], strict_mode=True)
    except binascii.Error:
        return None


def _plain(segment: bytes) -> bool:
    header = _json(_HEADER, segment)
    return (
        isinstance(header, Header)
        and header.alg == "HS256"
        and header.typ in (UNSET, "JWT")
        and (header.kid is UNSET or isinstance(header.kid, str))
        and header.crit is UNSET
        and header.b64 is UNSET
    )


def _claims(segment: bytes) -> Claims | None:
    if segment.count(b"[") + segment.count(b"{") > MAX_BRACKETS:
        return None
    claims = _json(_CLAIMS, segment)
    return claims if isinstance(claims, Claims) else None


def _json(decoder: msgspec.json.Decoder[Any], segment: bytes) -> object:
    # UTF-8 checked first: msgspec skips unknown members without checking
    # their bytes, and the json module refuses invalid UTF-8 anywhere.
    try:
        return decoder.decode(segment.decode())
    except (msgspec.DecodeError, ValueError, RecursionError):
        return None


def check(claims: Claims, issuer: str, audience: str, now: float) -> None:
    """PyJWT 2.15's _validate_claims with require=[exp, iss, aud, sub] and
    leeway 0, check for check and exception for exception."""
    if (
        type(claims.exp) is int  # not bool
        and claims.exp > now
        and claims.iss == issuer
        and claims.aud == audience != ""
        and type(claims.sub) is str
        and claims.iat is UNSET
        and claims.nbf is UNSET
        and claims.jti is UNSET
    ):
        return  # the shape the backend mints, valid: each check below passes
    for name in ("exp", "iss", "aud", "sub"):
        value = getattr(claims, name)
        if value is UNSET or value is None:
            raise errors.MissingRequiredClaimError(name)
    if claims.iat is not UNSET and _integer(claims.iat, errors.InvalidIssuedAtError) > now:
        raise errors.ImmatureSignatureError("The token is not yet valid (iat)")
    if claims.nbf is not UNSET and _integer(claims.nbf, errors.DecodeError) > now:
        raise errors.ImmatureSignatureError("The token is not yet valid (nbf)")
    if _integer(claims.exp, errors.DecodeError) <= now:
        raise errors.ExpiredSignatureError("Signature has expired")
    if not isinstance(claims.iss, str) or claims.iss != issuer:
        raise errors.InvalidIssuerError("Invalid issuer")
    _check_audience(claims.aud, audience)
    if not isinstance(claims.sub, str):
        raise errors.InvalidSubjectError("Subject must be a string")
    if claims.jti is not UNSET and not isinstance(claims.jti, str):
        raise errors.InvalidJTIError("JWT ID must be a string")


def _check_audience(aud: object, audience: str) -> None:
    if not aud:
        raise errors.MissingRequiredClaimError("aud")
    accepted = [aud] if isinstance(aud, str) else aud
    if not isinstance(accepted, list) or not all(isinstance(a, str) for a in accepted):
        raise errors.InvalidAudienceError("Invalid claim format in token")
    if audience not in accepted:
        raise errors.InvalidAudienceError("Audience doesn't match")


def _integer(value: Any, error: type[errors.PyJWTError]) -> int:
    # int() as PyJWT calls it: it also takes "123", 1.5 and true.
    try:
        return int(value)
    except (ValueError, TypeError, OverflowError):
        raise error("a time claim must be an integer") from None
