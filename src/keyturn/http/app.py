"""The ASGI application: turn HTTP requests into ``WireRequest``s for the dialect that claims
them, enforce the body limit before reading, and send the ``WireResponse`` back.

Dialects are tried in order; the first whose ``claims`` accepts the request (judged from the
method, path and headers alone) answers it. Bodies larger than ``MAX_BODY_BYTES`` are refused
in the dialect's own format without being read.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from keyturn.dialects._wire import MAX_BODY_BYTES, Dialect, WireRequest, WireResponse


class _AnyPath(Convertor[str]):
    """Like Starlette's ``path`` convertor, but also across newlines (``%0A`` in a path), so
    every request reaches a dialect and gets the vendor's error format."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anypath", _AnyPath())

_NOT_CLAIMED = json.dumps(
    {"error": "no vendor API matches this request (missing signature headers?)"}
).encode()


def create_app(
    dialects: Sequence[Dialect], on_shutdown: Sequence[Callable[[], Awaitable[None]]] = ()
) -> Starlette:
    """Build the ASGI app serving ``dialects``, plus ``GET /healthz``. ``on_shutdown`` runs
    after the server stopped accepting requests (SIGTERM/SIGINT included)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        for callback in on_shutdown:
            await callback()

    async def dispatch(request: Request) -> Response:
        wire = _wire_request(request, b"")
        dialect = next((d for d in dialects if d.claims(wire)), None)
        if dialect is None:
            return Response(_NOT_CLAIMED, status_code=404, media_type="application/json")
        if _declared_length(request) > MAX_BODY_BYTES:
            return _send(dialect.too_large(wire))
        body = await _read_body(request)
        if body is None:
            return _send(dialect.too_large(wire))
        return _send(await dialect.handle(_wire_request(request, body)))

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/{path:anypath}", dispatch, methods=methods),
        ],
        lifespan=lifespan,
    )


def _wire_request(request: Request, body: bytes) -> WireRequest:
    headers: dict[str, str] = {}
    for raw_name, raw_value in request.scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        # Signed input: keep the first value of each header exactly as sent.
        headers.setdefault(name, raw_value.decode("latin-1"))
    client = request.client.host if request.client else ""
    return WireRequest(
        method=request.method,
        path=request.scope["path"],
        query=request.scope["query_string"].decode("latin-1"),
        headers=headers,
        body=body,
        client=client,
    )


def _declared_length(request: Request) -> int:
    value = request.headers.get("content-length", "0")
    return int(value) if value.isdigit() else 0


async def _read_body(request: Request) -> bytes | None:
    """The body, or None once it grows past the limit (chunked uploads have no length)."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return None
            chunks.append(chunk)
    except ClientDisconnect:
        return b""
    return b"".join(chunks)


def _send(response: WireResponse) -> Response:
    return Response(response.body, status_code=response.status, headers=dict(response.headers))
