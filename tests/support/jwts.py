"""End users' tokens for the tests: RSA keys, tokens minted with PyJWT, and
a real JWKS server on loopback whose key set a test may change."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.stub_http import QuietHandler

ISSUER = "https://login.shop.test/"
AUDIENCE = "flashsale"
HMAC_SECRET = "claim-token-secret-0123456789abcdef"


@cache
def private_key(name: str = "a") -> rsa.RSAPrivateKey:
    """One RSA key per name for the whole session (generating one is slow)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(name: str = "a") -> bytes:
    return (
        private_key(name)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def write_public_key(folder: Path, name: str = "a") -> Path:
    path = folder / f"jwt-{name}.pem"
    path.write_bytes(public_pem(name))
    return path


def mint(sub: str, *, key: str = "a", kid: str | None = None, **claims: Any) -> str:
    """An RS256 token for ``sub``, valid for an hour unless ``claims`` say otherwise."""
    payload = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 3600}
    payload.update(claims)
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(payload, private_key(key), algorithm="RS256", headers=headers)


def mint_hs256(sub: str, secret: str = HMAC_SECRET, **claims: Any) -> str:
    payload = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 3600}
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm="HS256")


def jwk(name: str, kid: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        jwt.algorithms.RSAAlgorithm.to_jwk(private_key(name).public_key())
    )
    return {**document, "kid": kid, "use": "sig", "alg": "RS256"}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


class JwksServer:
    """Serves ``keys`` (a list a test may replace) at ``url``; counts fetches."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.fetches = 0
        owner = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                self.send_json(200, json.dumps({"keys": owner.keys}).encode())

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/jwks.json"

    @contextmanager
    def running(self) -> Iterator[JwksServer]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=10)


def jwt_settings(key_file: Path | None = None, jwks_url: str | None = None) -> dict[str, str]:
    """The environment verifying the tokens ``mint`` and ``mint_hs256`` make."""
    keys = {"JWT_PUBLIC_KEY_FILE": str(key_file)} if key_file else {"JWT_JWKS_URL": str(jwks_url)}
    return {
        **keys,
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
        "JWT_HMAC_SECRET": HMAC_SECRET,
    }
