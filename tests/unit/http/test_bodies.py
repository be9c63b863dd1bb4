"""Unit tests of ``keyturn.http.bodies.BodyReader`` over in-memory ASGI messages: small bodies
are read at once even while the large-body budget is taken; large ones wait for their share
and give up after the timeout; declared and streamed lengths past the limit, and a client that
goes away, end the read."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from starlette.requests import Request
from starlette.types import Message

from keyturn.dialects._wire import MAX_BODY_BYTES
from keyturn.http.bodies import SMALL_BODY, BodyReader, Unread


class Upload:
    """A request whose body arrives as ``chunks``; with ``stall`` it then never completes."""

    def __init__(
        self, chunks: Sequence[bytes], *, length: int | None = None, stall: bool = False
    ) -> None:
        headers = [(b"content-length", str(length).encode())] if length is not None else []
        if length is None and chunks:
            headers = [(b"transfer-encoding", b"chunked")]
        self._messages: list[Message] = [
            {"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks
        ]
        if not stall:
            self._messages.append({"type": "http.request", "body": b"", "more_body": False})
        self.started = asyncio.Event()
        scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
        self.request = Request(scope, self._receive)

    async def _receive(self) -> Message:
        self.started.set()
        if self._messages:
            return self._messages.pop(0)
        await asyncio.Event().wait()  # stalled: nothing more ever comes
        raise AssertionError("unreachable")


class Gone:
    """A request whose client disconnects after the first chunk."""

    def __init__(self, length: int) -> None:
        messages: list[Message] = [
            {"type": "http.request", "body": b"x", "more_body": True},
            {"type": "http.disconnect"},
        ]

        async def receive() -> Message:
            return messages.pop(0)

        headers = [(b"content-length", str(length).encode())]
        self.request = Request({"type": "http", "headers": headers}, receive)


async def test_bodies_are_read_whole() -> None:
    reader = BodyReader(timeout=1)
    assert await reader.read(Upload([b"ab", b"cd"], length=4).request) == b"abcd"
    assert await reader.read(Upload([], length=0).request) == b""
    big = [b"x" * 65536] * 4
    assert await reader.read(Upload(big, length=4 * 65536).request) == b"".join(big)


async def test_small_bodies_do_not_wait_behind_stalled_large_ones() -> None:
    reader = BodyReader(timeout=5, budget=2 * MAX_BODY_BYTES)
    stalled = [Upload([b"x"], length=MAX_BODY_BYTES, stall=True) for _ in range(3)]
    readers = [asyncio.create_task(reader.read(upload.request)) for upload in stalled]
    await asyncio.gather(*(stalled[i].started.wait() for i in range(2)))
    await asyncio.sleep(0.01)
    assert not stalled[2].started.is_set()  # no share of the budget left: not read at all
    small = Upload([b"{}"], length=SMALL_BODY)
    assert await asyncio.wait_for(reader.read(small.request), 1) == b"{}"
    readers[0].cancel()  # its connection went away: its share goes to the next in line
    await asyncio.wait_for(stalled[2].started.wait(), 1)
    for task in readers:
        task.cancel()


async def test_a_large_body_gives_up_after_the_timeout() -> None:
    reader = BodyReader(timeout=0.05, budget=MAX_BODY_BYTES)
    holder = Upload([b"x"], length=MAX_BODY_BYTES, stall=True)
    held = asyncio.create_task(reader.read(holder.request))
    await holder.started.wait()
    waiting = Upload([b"y"], length=SMALL_BODY + 1)
    assert await reader.read(waiting.request) is Unread.GONE
    assert not waiting.started.is_set()
    held.cancel()


async def test_limits_and_disconnects() -> None:
    reader = BodyReader(timeout=1)
    declared = Upload([b"x"], length=MAX_BODY_BYTES + 1)
    assert await reader.read(declared.request) is Unread.TOO_LARGE
    assert not declared.started.is_set()  # refused unread
    absurd = Upload([b"x"], length=10**40)
    assert await reader.read(absurd.request) is Unread.TOO_LARGE
    chunked = Upload([b"x" * 65536] * 17)  # no length: read until it passes the limit
    assert await reader.read(chunked.request) is Unread.TOO_LARGE
    assert await reader.read(Gone(100).request) is Unread.GONE
    assert await reader.read(Gone(MAX_BODY_BYTES).request) is Unread.GONE
