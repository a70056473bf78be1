"""The raw ceiling: a bare ASGI callable, no framework and no database, that
answers the claim body the way the service does (strict msgspec decode of
ClaimRequest, a ClaimResponse encoded), served by Granian exactly as
``flashsale serve`` serves the service (flashsale.server.run_server: same
workers, loop, backlog and HTTP settings). Its requests/s are what a claim
could reach if neither the framework nor the database cost anything.

    python -m flashsale.bench.raw_ceiling   (APP_HOST, APP_PORT, WEB_WORKERS)
"""

from __future__ import annotations

import sys
from typing import Any

import msgspec

from flashsale.config import load_settings
from flashsale.http.schemas import ClaimRequest, ClaimResponse

_DECODER = msgspec.json.Decoder(ClaimRequest)
_ENCODER = msgspec.json.Encoder()
_HEALTH = b'{"status":"ok","database":"none"}'
READY = b'{"event": "worker ready", "level": "info", "logger": "flashsale.bench.raw"}\n'

Message = dict[str, Any]


async def app(scope: Message, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "http":
        body = await _body(receive)
        if scope["path"] == "/health":
            await _answer(send, 200, _HEALTH)
            return
        try:
            claim = _DECODER.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            await _answer(send, 400, b'{"error":"invalid_request","message":"bad body"}')
            return
        response = ClaimResponse(user_id=claim.user_id, coupon_name=claim.coupon_name)
        await _answer(send, 200, _ENCODER.encode(response))


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            sys.stdout.buffer.write(READY)  # what the bench's start_server waits for
            sys.stdout.flush()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    from flashsale.server import run_server

    run_server(load_settings(), "flashsale.bench.raw_ceiling:app", factory=False)


if __name__ == "__main__":
    main()
