"""End users' tokens for ``flashsale bench --claimers``: a throwaway RSA key
and HMAC secret, the server settings that verify them (CLAIM_AUTH=user,
docs/access.md), tokens minted ahead of a run for new users (no cache hit),
and what one verification costs in this process.

Minting is not measured: the tokens are written to files before wrk starts
(claim.lua reads ``<file>.<thread>``, one ``Bearer`` value a line)."""

from __future__ import annotations

import multiprocessing
import os
import secrets
import time
import timeit
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from flashsale.config import load_settings
from flashsale.http.end_users import EndUsers

ISSUER = "https://login.bench.flashsale/"
AUDIENCE = "flashsale-bench"
RS256 = "RS256"
HS256 = "HS256"
LIFETIME_S = 3600  # a run's tokens outlive it
COST_TOKENS = 2_000  # new tokens the verification cost is timed over


@dataclass(frozen=True, slots=True)
class Keys:
    """One run's signing material (RSA 2048, as identity providers sign)."""

    private_pem: bytes
    public_file: Path
    hmac_secret: str

    def server_env(self) -> dict[str, str]:
        """A server whose claims need a token: RS256 by the public key,
        HS256 claim tokens by the secret."""
        return {
            "CLAIM_AUTH": "user",
            "JWT_PUBLIC_KEY_FILE": str(self.public_file),
            "JWT_ISSUER": ISSUER,
            "JWT_AUDIENCE": AUDIENCE,
            "JWT_ALGORITHMS": RS256,
            "JWT_HMAC_SECRET": self.hmac_secret,
        }


def new_keys(folder: Path) -> Keys:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_file = folder / "bench-jwt.pem"
    public_file.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Keys(private_pem, public_file, secrets.token_urlsafe(32))


def mint(keys: Keys, algorithm: str, subs: list[str]) -> list[str]:
    """One token per sub, valid for LIFETIME_S."""
    key: str | rsa.RSAPrivateKey = keys.hmac_secret
    if algorithm == RS256:
        # Loaded once: PyJWT would load (and check) a PEM key on every call, ms each.
        loaded = serialization.load_pem_private_key(keys.private_pem, password=None)
        assert isinstance(loaded, rsa.RSAPrivateKey)
        key = loaded
    expires = int(time.time()) + LIFETIME_S
    return [
        jwt.encode(
            {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": expires}, key, algorithm=algorithm
        )
        for sub in subs
    ]


def mint_many(keys: Keys, algorithm: str, subs: list[str]) -> list[str]:
    """``mint`` on every core (an RS256 signature is about 0.3 ms)."""
    processes = max(1, os.cpu_count() or 1)
    chunks = [subs[i::processes] for i in range(processes)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        minted = pool.starmap(mint, [(keys, algorithm, chunk) for chunk in chunks])
    return [token for chunk in minted for token in chunk]


def token_files(folder: Path, name: str, tokens: list[str], threads: int) -> str:
    """``<folder>/<name>.<thread>`` for wrk's threads 1..``threads``, each
    an equal share of ``tokens`` as ``Bearer`` values; the prefix for
    claim.lua's ``tokens=`` argument."""
    prefix = folder / name
    for thread in range(1, threads + 1):
        lines = (f"Bearer {token}\n" for token in tokens[thread - 1 :: threads])
        Path(f"{prefix}.{thread}").write_text("".join(lines))
    return str(prefix)


def new_subs(label: str, count: int) -> list[str]:
    run = uuid.uuid4().hex[:8]
    return [f"{label}-{run}-{i}" for i in range(count)]


def verification_cost(keys: Keys, algorithm: str) -> tuple[float, float]:
    """Microseconds per token of ``EndUsers.verify`` (the server's check, in
    this process, one core): a new token (no cache hit), and one remembered."""
    users = EndUsers(load_settings(keys.server_env()))
    tokens = mint_many(keys, algorithm, new_subs("cost", COST_TOKENS))
    return _per_token(users.verify, tokens), _per_token(users.verify, tokens)


def _per_token(verify: Callable[[str, str | None], object], tokens: list[str]) -> float:
    remaining = iter(tokens)
    seconds = timeit.timeit(lambda: verify(next(remaining), "127.0.0.1"), number=len(tokens))
    return seconds / len(tokens) * 1e6
