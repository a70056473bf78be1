"""User ids in paths: ``/api/coupons/{name}/claims/{user_id}`` and
``/api/users/{user_id}/claims`` carry any valid user id, '/' included,
percent-encoded by the client (``a%2Fb``).

An ASGI server decodes the path before routing (``scope["path"]`` has
``a/b``, which Litestar's router would split into two segments), and keeps
the bytes as sent in ``scope["raw_path"]``. For these routes only, this layer
routes on the raw path: each segment stays percent-encoded, so '/' inside an
id is never a separator, and the handlers decode their parameters themselves
(http/requests.py path_user_id, path_coupon_name), exactly once."""

from __future__ import annotations

import re
from urllib.parse import quote, quote_from_bytes

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send

_USER_PATHS = re.compile(r"^/api/(?:users/|coupons/[^/]+/claims/.)")
# Kept as sent: '/' separates, '%' starts an escape, sub-delims and ':' '@'
# are valid in a segment (RFC 3986 3.3); letters, digits, "_.-~" always are.
_KEEP = "/%!$&'()*+,;=:@"


class RawUserPaths:
    def __init__(self, inner: ASGIApp) -> None:
        self._inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and _USER_PATHS.match(scope["path"]):
            scope["path"] = encoded_path(scope)
        await self._inner(scope, receive, send)


def encoded_path(scope: HTTPScope) -> str:
    """The path with each segment as the client percent-encoded it."""
    raw = scope.get("raw_path")
    # Some clients' transports (httpx's ASGI one) leave the query in
    # raw_path; a '?' in a path segment is always sent as %3F. Without
    # raw_path re-encode the decoded path: the handlers' decoding then
    # gives the same text back.
    if raw:
        # Bytes a client sent unencoded (UTF-8, spaces) are encoded here,
        # so every segment is ASCII and decodes once, as UTF-8.
        return quote_from_bytes(raw.split(b"?", 1)[0], safe=_KEEP)
    return quote(scope["path"], safe="/")
