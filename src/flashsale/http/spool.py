"""Large answers that never wait on a slow client: the body is written to a
temporary file as fast as the database gives it, and sent from the file at
whatever pace the client reads.

A coupon's claimers are read from one snapshot through a pool connection
and a large-read slot (storage/reads.py); before, both were held until the
last byte had reached the client, so ten clients reading at 2 KB/s held
every slot and every other coupon read answered 503. Here a producer task
fills the file and ends with the snapshot (seconds for a million claimers),
while the response drains it: a slow reader holds a file descriptor and
disk space, nothing shared; the bounds layer (http/bounds.py) cuts it off
below the minimum rate. The file is on disk (TMPDIR), so a worker's memory
stays at one chunk per reader; ``Spools`` bounds the bytes held at once."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import suppress

from flashsale.domain import ServiceUnavailable
from flashsale.metrics import count_cut

READ_BYTES = 64 * 1024  # small: Granian keeps up to 32 sends queued per answer


class Spools:
    """The bytes a worker holds spooled, against its budget."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.held = 0

    def check(self) -> None:
        """503 before an answer starts when the budget is spent."""
        if self.held >= self.max_bytes:
            count_cut("spool_full")
            raise ServiceUnavailable("too many large reads are being sent, retry shortly")


async def spooled(chunks: AsyncIterator[bytes], spools: Spools) -> AsyncIterator[bytes]:
    """``chunks`` as they come, read ahead into a temporary file: the first
    chunk is passed on at once (a small answer is that one chunk and never
    touches the disk); the rest is produced into the file without waiting
    for the client. An error while producing cuts the answer where it is."""
    first = await anext(chunks, None)
    if first is None:
        return
    yield first
    second = await anext(chunks, None)
    if second is None:
        return
    spool = _Spool(spools)
    spool.write(second)
    producer = asyncio.create_task(spool.fill(chunks))
    try:
        async for chunk in spool.drain():
            yield chunk
        await producer  # raises what ended it, if anything
    finally:
        producer.cancel()
        with suppress(asyncio.CancelledError):
            await producer
        spool.close()


class _Spool:
    def __init__(self, spools: Spools) -> None:
        self._spools = spools
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self._fd = self._file.fileno()
        self._written = 0
        self._done = False
        self._grew = asyncio.Event()

    async def fill(self, chunks: AsyncIterator[bytes]) -> None:
        try:
            async for chunk in chunks:
                self.write(chunk)
        finally:
            self._done = True
            self._grew.set()

    def write(self, chunk: bytes) -> None:
        # A page-cache write: microseconds, not worth a thread.
        os.pwrite(self._fd, chunk, self._written)
        self._written += len(chunk)
        self._spools.held += len(chunk)
        self._grew.set()

    async def drain(self) -> AsyncIterator[bytes]:
        sent = 0
        while True:
            if sent < self._written:
                data = os.pread(self._fd, min(READ_BYTES, self._written - sent), sent)
                sent += len(data)
                yield data
            elif self._done:
                return
            else:
                self._grew.clear()
                await self._grew.wait()

    def close(self) -> None:
        self._spools.held -= self._written
        self._written = 0
        self._file.close()
