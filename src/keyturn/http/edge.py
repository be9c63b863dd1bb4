"""The connection layer under the ASGI app: uvicorn's httptools protocol with a connection
limit, a deadline to receive each request, small reads and a cap on the request head.

Hand-written because uvicorn has none of these in a shape that protects memory: its
``limit_concurrency`` accepts the connection, reads the request and answers a text/plain 503 —
spending memory on exactly the clients it should shed — and it has no deadline for a request's
headers or body, so a client sending a byte at a time keeps its connection, and all it sent,
for as long as it likes. The hooks for both are the protocol's (``connection_made`` and the
parser callbacks), so this subclasses ``HttpToolsProtocol`` and stays small:

- with ``max_connections`` connections open, a new one is closed (reset) as soon as it is
  accepted, before anything is read; uvicorn's own connection set is the count;
- a request must arrive whole — request line, headers and body — within ``read_timeout``
  seconds of its first byte (of the connection, for the first request); idle keep-alive
  connections are uvicorn's (closed after 5 s). Progress does not extend the deadline, so
  headers dribbled a byte at a time are cut at it; the connection is reset without an answer;
- the socket is read ``READ_CHUNK`` bytes at a time (``BufferedProtocol``) and reading pauses
  once more than ``BODY_HIGH_WATER`` bytes of a body wait unread by the app, so a connection
  whose body the app has not started reading holds a few tens of KiB here and the rest stays
  in the kernel (the app bounds the bodies it reads at once: ``keyturn.http.bodies``);
- a request head (request line and headers) over ``MAX_HEAD_BYTES`` gets a JSON 431, and
  the rest of what the client sends is dropped until it closes (or the deadline).

With TLS the protocol starts once the handshake is done, so handshakes are bounded by the
event loop's handshake timeout (60 s), not by these limits.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from keyturn.dialects._wire import MAX_BODY_BYTES

log = logging.getLogger(__name__)

#: Bytes read from a socket at once.
READ_CHUNK = 16 * 1024
#: Unread body bytes after which a connection stops being read until the app asks for more.
BODY_HIGH_WATER = 16 * 1024
#: The largest request line plus headers: room for the largest body's worth of signature
#: material (a GET carries its parameters in the URL), and some.
MAX_HEAD_BYTES = MAX_BODY_BYTES + 64 * 1024
#: Seconds between two warnings that new connections are being refused.
WARN_EVERY = 10.0

_HEAD_TOO_LARGE_BODY = b'{"error": "request line and headers over the size limit"}'
_HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\n"
    b"content-length: " + str(len(_HEAD_TOO_LARGE_BODY)).encode() + b"\r\n"
    b"connection: close\r\n\r\n" + _HEAD_TOO_LARGE_BODY
)


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeLimits:
    max_connections: int
    #: Seconds to receive one request, headers and body.
    read_timeout: float


class _Refusals:
    """Counts connections refused over the limit and warns about them at most every
    ``WARN_EVERY`` seconds, so a flood of connections is not also a flood of log lines."""

    def __init__(self) -> None:
        self.count = 0
        self.warned_at = float("-inf")

    def refused(self, now: float, limit: int) -> None:
        self.count += 1
        if now - self.warned_at >= WARN_EVERY:
            log.warning(
                "%d connection(s) refused: %d connections are open (KEYTURN_MAX_CONNECTIONS)",
                self.count,
                limit,
            )
            self.count, self.warned_at = 0, now


class EdgeProtocol(HttpToolsProtocol, asyncio.BufferedProtocol):
    """``HttpToolsProtocol`` with keyturn's connection limit, read deadline and bounded
    buffering; give uvicorn ``edge_protocol(limits)``, which binds the limits."""

    limits: ClassVar[EdgeLimits]
    refusals: ClassVar[_Refusals]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._view = memoryview(bytearray())
        self._deadline: asyncio.TimerHandle | None = None
        #: Bytes of the current request head received so far; None once the head is complete.
        self._head_bytes: int | None = 0
        #: Set once a request was refused for its head: nothing more is parsed.
        self._discarding = False

    # Connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        limit = self.limits.max_connections
        if len(self.server_state.connections) >= limit:
            # Before uvicorn sees it: nothing is allocated, read or answered.
            self.transport = transport
            transport.abort()
            self.refusals.refused(self.loop.time(), limit)
            return
        super().connection_made(transport)
        self._view = memoryview(bytearray(READ_CHUNK))
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # Reading: small chunks into one buffer per connection.

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._view[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        if self._head_bytes is not None:
            # Any byte of a request starts its deadline, blank lines between requests too.
            if self._deadline is None:
                self._arm()
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                # Answer, then drop what else comes until the client closes or the deadline
                # (closing at once, with its data unread, would reset the answer away).
                self._head_bytes = None
                self._discarding = True
                self.transport.write(_HEAD_TOO_LARGE)
                if self.transport.can_write_eof():  # not over TLS
                    self.transport.write_eof()
                return
        super().data_received(data)

    # Parser callbacks: the deadline runs from a request's first byte to its last.

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        if len(self.cycle.body) > BODY_HIGH_WATER:
            self.flow.pause_reading()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()
        self._head_bytes = 0

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.limits.read_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.debug(
                "closed a connection from %s: no complete request within %g s",
                self.client[0] if self.client else "?",
                self.limits.read_timeout,
            )
            # abort, not close: a client that does not read must not keep it open either.
            self.transport.abort()


def edge_protocol(limits: EdgeLimits) -> type[EdgeProtocol]:
    """The protocol class to give uvicorn (``Config(http=...)``), bound to ``limits``."""

    class BoundEdgeProtocol(EdgeProtocol):
        pass

    BoundEdgeProtocol.limits = limits
    BoundEdgeProtocol.refusals = _Refusals()
    return BoundEdgeProtocol
