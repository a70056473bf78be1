"""Static bearer tokens (ADMIN_TOKEN, BACKEND_TOKEN, METRICS_TOKEN): a
comma-separated list, so that a token rotates without downtime (add the new
one, move the clients, remove the old one). Each entry is ``name:token`` or
a bare token, named ``<kind>-<position>`` (``admin-1``, ``backend-2``); the
name, never the token, is what logs and events may show."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from flashsale.config import token_entries


@dataclass(frozen=True, slots=True)
class Token:
    name: str
    secret: bytes


def parse_tokens(text: str | None, kind: str) -> tuple[Token, ...]:
    """The entries of one setting (config.token_entries); empty ones ignored."""
    return tuple(Token(name, secret.encode("utf-8")) for name, secret in token_entries(text, kind))


def match(tokens: tuple[Token, ...], presented: bytes) -> str | None:
    """The name of the token ``presented`` is, or None. Every token is
    compared, each in constant time: the answer's timing reveals neither a
    token's prefix nor which entry matched."""
    found = None
    for token in tokens:
        if hmac.compare_digest(presented, token.secret):
            found = token.name
    return found
