"""``flashsale verify-draw URL COUPON``: recompute a raffle's draw from what
the API publishes (the coupon body and every page of its entries) and print
``ok`` or each discrepancy. Exit 0 ok, 1 discrepancies, 2 when there is
nothing to check (unreachable, no such coupon, not a raffle, not drawn yet).

Every read is bounded: explicit timeouts, at most ``--max-pages`` pages of
entries, ``--max-bytes`` per answer and ``--max-seconds`` in all, so a
hostile or broken server cannot keep the checker reading forever."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import quote

import click
import httpx
import msgspec

from flashsale.cli.draw_check import Entrant, Published, check_draw, shown

PAGE_LIMIT = 1000  # entries per page: the API's largest page
TIMEOUT = httpx.Timeout(30.0, connect=5.0)  # each read, write and pool wait; connecting


T = TypeVar("T")


class NothingToCheck(Exception):
    """Exit 2: the draw cannot be checked (yet), said why."""


class _Coupon(msgspec.Struct):
    name: str
    amount: int
    claimed_by: list[str]
    status: str
    allocation: str = "first_come"
    draw_at: str | None = None
    draw_commitment: str | None = None
    draw_seed: str | None = None
    entries: int | None = None
    draw_winners: int | None = None
    waitlisted: int | None = None


class _Entry(msgspec.Struct):
    entrant: str
    place: int | None


class _Page(msgspec.Struct):
    entries: list[_Entry]
    next: str | None


@dataclass(frozen=True, slots=True)
class Bounds:
    max_pages: int
    max_bytes: int
    max_seconds: float = 600.0  # the whole read: a server dripping bytes is cut off


class Reader:
    """GETs of one service, each answer read up to ``bounds.max_bytes``, all
    of them within ``bounds.max_seconds``."""

    def __init__(
        self, client: httpx.Client, bounds: Bounds, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.client = client
        self.bounds = bounds
        self._clock = clock
        self._deadline = clock() + bounds.max_seconds

    def get(self, path: str, params: dict[str, str] | None = None) -> tuple[int, bytes]:
        try:
            with self.client.stream("GET", path, params=params) as answer:
                return answer.status_code, self._body(answer.iter_bytes(), path)
        except httpx.HTTPError as error:
            raise NothingToCheck(f"cannot read {path}: {type(error).__name__}: {error}") from None

    def _body(self, chunks: Iterator[bytes], path: str) -> bytes:
        body = bytearray()
        for chunk in chunks:
            body += chunk
            if len(body) > self.bounds.max_bytes:
                raise NothingToCheck(f"{path} answered more than {self.bounds.max_bytes} bytes")
            if self._clock() > self._deadline:
                raise NothingToCheck(f"reading took more than {self.bounds.max_seconds:g} s")
        return bytes(body)


def read_published(reader: Reader, coupon: str) -> Published:
    """The drawn raffle's body and every entry; NothingToCheck if there is none."""
    base = f"/api/coupons/{quote(coupon, safe='')}"
    body = _decode(reader.get(base), base, _Coupon)
    if body.allocation != "raffle":
        raise NothingToCheck(f"coupon {coupon!r} is not a raffle (allocation {body.allocation})")
    if body.draw_seed is None:
        raise NothingToCheck(
            f"coupon {coupon!r} is not drawn yet (status {body.status}, draw_at {body.draw_at}): "
            "the seed is published once the draw has finished"
        )
    return Published(
        coupon=coupon,
        commitment=body.draw_commitment,
        seed=body.draw_seed,
        entries=body.entries,
        draw_winners=body.draw_winners,
        waitlisted=body.waitlisted,
        claimed_by=body.claimed_by,
        entrants=list(_entrants(reader, base + "/entries")),
    )


def _entrants(reader: Reader, path: str) -> Iterator[Entrant]:
    params = {"limit": str(PAGE_LIMIT)}
    for _ in range(reader.bounds.max_pages):
        page = _decode(reader.get(path, params), path, _Page)
        yield from (Entrant(entry.entrant, entry.place) for entry in page.entries)
        if page.next is None:
            return
        params = {"limit": str(PAGE_LIMIT), "after": page.next}
    raise NothingToCheck(f"{path} has more than {reader.bounds.max_pages} pages (--max-pages)")


def _decode(answer: tuple[int, bytes], path: str, shape: type[T]) -> T:
    status, body = answer
    if status != 200:
        raise NothingToCheck(f"{path} answered {status}: {body[:300].decode(errors='replace')}")
    try:
        return msgspec.json.decode(body, type=shape)
    except msgspec.ValidationError as error:
        raise NothingToCheck(f"{path} answered an unexpected body: {error}") from None
    except msgspec.DecodeError:
        raise NothingToCheck(f"{path} answered something that is not JSON") from None


def verify(client: httpx.Client, coupon: str, user: str | None, bounds: Bounds) -> int:
    """Prints the outcome; returns the exit status."""
    try:
        published = read_published(Reader(client, bounds), coupon)
    except NothingToCheck as reason:
        click.echo(f"cannot verify: {reason}", err=True)
        return 2
    verdict = check_draw(published, user)
    for line in verdict.notes:
        click.echo(line)
    if verdict.ok:
        click.echo("ok")
        return 0
    for line in shown(verdict.discrepancies):
        click.echo(f"discrepancy: {line}")
    return 1


@click.command(name="verify-draw")
@click.argument("url")
@click.argument("coupon")
@click.option("--user", help="Also check that this user's digest is listed, and at which place.")
@click.option(
    "--token",
    envvar="FLASHSALE_TOKEN",
    help="Bearer token for the reads, when the service asks for one [env: FLASHSALE_TOKEN].",
)
@click.option("--max-pages", type=int, default=10_000, help="Most pages of entries to read.")
@click.option("--max-bytes", type=int, default=256 << 20, help="Most bytes of any one answer.")
@click.option("--max-seconds", type=float, default=600.0, help="Most seconds for all the reads.")
def verify_draw_command(
    url: str,
    coupon: str,
    user: str | None,
    token: str | None,
    max_pages: int,
    max_bytes: int,
    max_seconds: float,
) -> None:
    """Recompute a raffle's draw from what the API at URL publishes (the seed
    against its commitment, every place from the seed and the entrants'
    digests, the claimers against the places) and print ok or each
    discrepancy. Exit 0 ok, 1 discrepancies, 2 nothing to check yet."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    bounds = Bounds(max_pages=max_pages, max_bytes=max_bytes, max_seconds=max_seconds)
    with httpx.Client(base_url=url, headers=headers, timeout=TIMEOUT) as client:
        sys.exit(verify(client, coupon, user, bounds))
