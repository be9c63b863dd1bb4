"""The ASGI application: turn HTTP requests into ``WireRequest``s for the dialect that claims
them, enforce the body limit before reading, and send the ``WireResponse`` back.

Dialects are tried in order; the first whose ``claims`` accepts the request (judged from the
method, path and headers alone) answers it. Bodies larger than ``MAX_BODY_BYTES`` are refused
in the dialect's own format without being read; bodies are read through ``BodyReader``, which
bounds the memory large ones hold at once. Paths under ``/admin/v1`` go to the admin API
(``keyturn.api``), which authenticates the request from its headers before its body is read.
Paths under ``/console`` go to the web console (``keyturn.console``), its body read within the
same bounds. ``GET /metrics`` serves the Prometheus text format (``MetricsEndpoint``), behind
a bearer token when one is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keyturn.api import AdminApi, ApiRequest, ApiResponse
from keyturn.console import Console, ConsoleRequest, ConsoleResponse
from keyturn.dialects._wire import Dialect, WireRequest, WireResponse
from keyturn.http.bodies import BodyReader, Unread


class _AnyPath(Convertor[str]):
    """Like Starlette's ``path`` convertor, but also across newlines (``%0A`` in a path), so
    every request reaches a dialect and gets the vendor's error format."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anypath", _AnyPath())

#: Why the node is not ready to serve (None: ready), e.g. ``SqlStore.readiness``.
Readiness = Callable[[], Awaitable[str | None]]

_NOT_CLAIMED = json.dumps(
    {"error": "no vendor API matches this request (missing signature headers?)"}
).encode()
#: For a body that never arrived: the client is usually gone (the edge closed the connection at
#: the same deadline), so this is rarely seen.
_NOT_RECEIVED = json.dumps({"error": "the request body was not received in time"}).encode()
_UNAUTHORIZED = json.dumps(
    {"error": "the metrics need Authorization: Bearer <KEYTURN_METRICS_TOKEN>"}
).encode()


@dataclass(frozen=True, slots=True)
class MetricsEndpoint:
    """What ``GET /metrics`` serves: ``render()`` gives the exposition in ``content_type``;
    with ``token`` set, a request must send ``Authorization: Bearer <token>``."""

    render: Callable[[], Awaitable[bytes]]
    content_type: str
    token: str | None = field(default=None, repr=False)

    def allows(self, authorization: str) -> bool:
        """Whether an ``Authorization`` header value admits the scrape (constant time over
        the token: a wrong one takes as long as a right one of the same length)."""
        if not self.token:
            return True
        scheme, _, credential = authorization.partition(" ")
        given = credential.strip().encode("utf-8", "surrogateescape")
        matches = hmac.compare_digest(given, self.token.encode())
        return scheme.lower() == "bearer" and matches


def create_app(
    dialects: Sequence[Dialect],
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
    *,
    read_timeout: float,
    readiness: Readiness | None = None,
    readiness_timeout: float = 5.0,
    admin_api: AdminApi | None = None,
    metrics: MetricsEndpoint | None = None,
    console: Console | None = None,
) -> Starlette:
    """Build the ASGI app serving ``dialects``, plus ``GET /healthz`` (the process answers; no
    store access) and ``GET /readyz`` (``readiness`` says the store is reachable and its schema
    current, within ``readiness_timeout`` seconds; else 503, JSON) for load balancers.
    ``on_shutdown`` runs after the server stopped accepting requests (SIGTERM/SIGINT
    included); ``read_timeout`` is how long a large body may wait for its turn to be read
    (``KEYTURN_READ_TIMEOUT``). ``admin_api`` answers ``/admin/v1/...``: it authenticates a
    request from its headers before the body is read (within the same bounds as the
    dialects'). With ``metrics``, ``GET /metrics`` serves them; with ``console``, ``/console``
    is the web console."""
    bodies = BodyReader(timeout=read_timeout)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        for callback in on_shutdown:
            await callback()

    async def admin(api: AdminApi, request: Request) -> Response:
        head = _api_request(request, b"")
        who = await api.authenticate(head)
        if isinstance(who, ApiResponse):
            return _send_api(who)
        body = await bodies.read(request)
        if body is Unread.TOO_LARGE:
            return _send_api(api.too_large(who))
        if body is Unread.GONE:
            headers = {"connection": "close"}
            return Response(_NOT_RECEIVED, 408, headers, media_type="application/json")
        return _send_api(await api.handle(who, _api_request(request, body)))

    async def web_console(pages: Console, request: Request) -> Response:
        body = await bodies.read(request) if request.method == "POST" else b""
        if body is Unread.TOO_LARGE or body is Unread.GONE:
            return Response(b"request body too large or not received", 413, media_type="text/plain")
        wire = _wire_request(request, body)
        answer = await pages.handle(
            ConsoleRequest(
                method=wire.method,
                path=wire.path,
                query=wire.query,
                headers=wire.headers,
                body=body,
                client=wire.client,
                secure=request.url.scheme == "https",
            )
        )
        return _send_console(answer)

    async def dispatch(request: Request) -> Response:
        if console is not None and Console.claims(request.scope["path"]):
            return await web_console(console, request)
        if admin_api is not None and AdminApi.claims(request.scope["path"]):
            return await admin(admin_api, request)
        wire = _wire_request(request, b"")
        dialect = next((d for d in dialects if d.claims(wire)), None)
        if dialect is None:
            return Response(_NOT_CLAIMED, status_code=404, media_type="application/json")
        body = await bodies.read(request)
        if body is Unread.TOO_LARGE:
            return _send(dialect.too_large(wire))
        if body is Unread.GONE:
            headers = {"connection": "close"}
            return Response(_NOT_RECEIVED, 408, headers, media_type="application/json")
        return _send(await dialect.handle(_wire_request(request, body)))

    async def healthz(request: Request) -> Response:
        # The answering process, so that the workers of ``serve --workers`` can be told apart.
        headers = {"x-keyturn-pid": str(os.getpid())}
        return Response(b'{"status":"ok"}', headers=headers, media_type="application/json")

    async def readyz(request: Request) -> Response:
        reason: str | None = None
        if readiness is not None:
            try:
                async with asyncio.timeout(readiness_timeout):
                    reason = await readiness()
            except TimeoutError:
                reason = "the store did not answer in time"
        if reason is None:
            return Response(b'{"status":"ready"}', media_type="application/json")
        body = json.dumps({"status": "unavailable", "reason": reason}).encode()
        return Response(body, status_code=503, media_type="application/json")

    async def scrape(request: Request) -> Response:
        assert metrics is not None
        if not metrics.allows(request.headers.get("authorization", "")):
            headers = {"www-authenticate": 'Bearer realm="keyturn metrics"'}
            return Response(_UNAUTHORIZED, 401, headers, media_type="application/json")
        # The answering worker, as ``/healthz`` names it (the counts are every worker's).
        headers = {"content-type": metrics.content_type, "x-keyturn-pid": str(os.getpid())}
        return Response(await metrics.render(), headers=headers)

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    if metrics is not None:
        routes.append(Route("/metrics", scrape, methods=["GET"]))
    routes.append(Route("/{path:anypath}", dispatch, methods=methods))
    return Starlette(routes=routes, lifespan=lifespan)


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


def _api_request(request: Request, body: bytes) -> ApiRequest:
    wire = _wire_request(request, body)
    return ApiRequest(
        method=wire.method,
        path=wire.path,
        query=wire.query,
        headers=wire.headers,
        body=body,
        client=wire.client,
    )


def _send_api(response: ApiResponse) -> Response:
    return Response(response.body, status_code=response.status, headers=response.headers)


def _send_console(answer: ConsoleResponse) -> Response:
    response = Response(answer.body, status_code=answer.status, media_type=answer.content_type)
    for name, value in answer.headers:
        response.headers.append(name, value)
    return response


def _send(response: WireResponse) -> Response:
    return Response(response.body, status_code=response.status, headers=dict(response.headers))
