"""Reading request bodies without letting slow or stalled clients pin memory.

A body is held whole until it is complete, because signatures cover it. The edge protocol
(``keyturn.http.edge``) stops reading a connection once a few KiB of its body wait unread, so a
body the app has not started on costs little; a body being read costs up to its size. So bodies
larger than ``SMALL_BODY`` are read only within a shared budget of ``LARGE_BODY_BUDGET`` bytes:
200 clients each stalled one byte short of a 1 MiB body hold the budget, not 200 MiB, while the
small calls every SDK makes never wait behind them. A large body that does not get its turn
within the read timeout is given up; the edge closes its connection at the same deadline.
"""

from __future__ import annotations

import asyncio
import enum

from starlette.requests import ClientDisconnect, Request

from keyturn.dialects._wire import MAX_BODY_BYTES

#: Bodies up to this size (declared) are read at once, outside the budget.
SMALL_BODY = 64 * 1024
#: Bytes of larger bodies read at once, across all connections.
LARGE_BODY_BUDGET = 8 * MAX_BODY_BYTES


class Unread(enum.Enum):
    """Why there is no body to hand to a dialect."""

    #: Declared, or grown, past ``MAX_BODY_BYTES``.
    TOO_LARGE = "too large"
    #: The client went away, or the body did not get its turn in time.
    GONE = "gone"


class BodyReader:
    """Read bodies up to ``MAX_BODY_BYTES``, large ones within the shared budget."""

    def __init__(self, *, timeout: float, budget: int = LARGE_BODY_BUDGET) -> None:
        self._timeout = timeout
        self._free = budget
        self._freed = asyncio.Condition()

    async def read(self, request: Request) -> bytes | Unread:
        size = _expected_size(request)
        if size > MAX_BODY_BYTES:
            return Unread.TOO_LARGE
        if size <= SMALL_BODY:
            return await _receive(request)
        try:
            async with asyncio.timeout(self._timeout):
                await self._take(size)
        except TimeoutError:
            return Unread.GONE
        try:
            return await _receive(request)
        finally:
            await self._give(size)

    async def _take(self, size: int) -> None:
        async with self._freed:
            await self._freed.wait_for(lambda: self._free >= size)
            self._free -= size

    async def _give(self, size: int) -> None:
        async with self._freed:
            self._free += size
            self._freed.notify_all()


def _expected_size(request: Request) -> int:
    """The declared length; a chunked body, whose length is unknown, may reach the limit."""
    length = request.headers.get("content-length", "")
    if length.isascii() and length.isdigit():
        # More digits than any real length: over the limit without converting them.
        return int(length) if len(length) <= 18 else MAX_BODY_BYTES + 1
    if "chunked" in request.headers.get("transfer-encoding", "").lower():
        return MAX_BODY_BYTES
    return 0


async def _receive(request: Request) -> bytes | Unread:
    """The body, or why not: it grew past the limit, or the client went away."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return Unread.TOO_LARGE
            chunks.append(chunk)
    except ClientDisconnect:
        return Unread.GONE
    return b"".join(chunks)
