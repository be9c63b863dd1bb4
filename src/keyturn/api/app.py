"""``AdminApi``: route, authenticate, validate, audit and answer one admin API request.

The HTTP layer hands it requests under ``PREFIX`` in two steps, so nothing a stranger sends is
read before it authenticates: ``authenticate`` looks at the method, path and headers alone (the
OpenAPI document needs no token; anything else without a valid admin token gets a 401 problem,
audited within the gate's per-source budget), and only then does the HTTP layer read the body
within its bounds and call ``handle``. ``handle`` matches the route (404 / 405 problems),
validates path, query and body against the route's declared schemas, and runs the handler
inside ``Gate.run_admin``, which audits it (``admin:<Operation>``, the tenant, the token's id,
the outcome) and, for a change, records ``started`` first or does not run it. Every error is a
problem document; an unexpected exception is logged and answered as a 500 problem that says
nothing about it.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from keyturn.api.handlers import Call
from keyturn.api.problems import MEDIA_TYPE, MethodNotAllowed, problem_bytes
from keyturn.api.schemas import COMPONENTS
from keyturn.api.spec import PATH_PARAMETERS, PREFIX, ROUTES, Route, document
from keyturn.api.validation import Schemas, parse_body, parse_query
from keyturn.core.admin_tokens import AdminToken
from keyturn.core.errors import (
    DomainError,
    InternalError,
    NotFound,
    RequestTooLarge,
    UnknownAction,
)
from keyturn.service.admin_tokens import AdminTokens
from keyturn.service.context import Caller
from keyturn.service.fleet import FleetJobs
from keyturn.service.gate import Gate
from keyturn.service.operator import Operator
from keyturn.service.operator_scope import Scope

log = logging.getLogger(__name__)

__all__ = ["PREFIX", "AdminApi", "ApiRequest", "ApiResponse"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiRequest:
    method: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    client: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A request whose token checked out; ``handle`` takes it with the body."""

    token: AdminToken
    request_id: str


class AdminApi:
    def __init__(
        self, operator: Operator, tokens: AdminTokens, gate: Gate, fleet: FleetJobs | None = None
    ) -> None:
        self._operator = operator
        self._fleet = fleet
        self._tokens = tokens
        self._gate = gate
        self._schemas = Schemas(COMPONENTS)
        self._document = json.dumps(document(), ensure_ascii=True).encode()

    @staticmethod
    def claims(path: str) -> bool:
        return path == PREFIX or path.startswith(PREFIX + "/")

    async def authenticate(self, request: ApiRequest) -> Authenticated | ApiResponse:
        """The token, or the answer to send at once (the document, or a 401 problem)."""
        request_id = str(uuid.uuid4())
        if request.path == PREFIX + "/openapi.json" and request.method in ("GET", "HEAD"):
            return ApiResponse(status=200, body=self._document, headers=_json_headers(request_id))
        try:
            token = await self._tokens.authenticate(request.headers.get("authorization"))
        except DomainError as error:
            caller = Caller(
                tenant_id="",
                key_id="",
                request_id=request_id,
                source_ip=request.client,
                user_agent=request.headers.get("user-agent", ""),
            )
            route, _ = _match(request.method, request.path)
            action = "admin:" + (route.name if route else "Unknown")
            await self._gate.rejected(caller, vendor="admin", action=action, code=error.code)
            response = self._problem(error, request_id)
            response.headers["www-authenticate"] = 'Bearer realm="keyturn admin API"'
            return response
        return Authenticated(token=token, request_id=request_id)

    def too_large(self, who: Authenticated) -> ApiResponse:
        return self._problem(RequestTooLarge(), who.request_id)

    async def handle(self, who: Authenticated, request: ApiRequest) -> ApiResponse:
        scope = Scope(
            tenant_id=who.token.tenant_id,
            token_id=who.token.id,
            request_id=who.request_id,
            source_ip=request.client,
            user_agent=request.headers.get("user-agent", ""),
        )
        try:
            route, path = route_of(request.method, request.path)
            call = Call(
                scope=scope,
                operator=self._operator,
                path=path,
                query=parse_query(request.query, route.query, self._schemas),
                body=self._body(route, request.body),
                fleet=self._fleet,
            )
        except DomainError as error:
            return self._problem(error, who.request_id)
        assert route.handler is not None
        handler = route.handler
        caller = scope.caller(await self._tenant_of(call, route))
        try:
            answer = await self._gate.run_admin(
                caller,
                action="admin:" + route.name,
                resource=request.path.removeprefix(PREFIX + "/"),
                mutating=route.mutating,
                execute=lambda: handler(call),
                authorize=(lambda: scope.require_all(route.name)) if route.all_tenants else None,
            )
        except DomainError as error:
            return self._problem(error, who.request_id)
        except Exception:
            log.exception("admin API %s failed", route.name)
            return self._problem(InternalError(), who.request_id)
        headers = _json_headers(who.request_id)
        if route.status == 204:
            return ApiResponse(status=204, headers={"x-request-id": who.request_id})
        if answer.task_id is not None:
            headers["location"] = f"{PREFIX}/tasks/{answer.task_id}"
        body = json.dumps(answer.payload, ensure_ascii=True).encode()
        return ApiResponse(status=route.status, body=body, headers=headers)

    def _body(self, route: Route, body: bytes) -> dict[str, Any]:
        if route.body is None:
            return {}
        value = parse_body(body)
        self._schemas.check(value, {"$ref": route.body}, "body")
        return value

    async def _tenant_of(self, call: Call, route: Route) -> str:
        """The tenant an audit record names: the token's; for a token of every tenant, the
        tenant the request is about when it says or its record tells (else ``*``)."""
        if call.scope.tenant_id is not None:
            return call.scope.tenant_id
        named = call.path.get("tenant_id") or call.query.get("tenant") or call.body.get("tenant")
        if isinstance(named, str) and named:
            return named
        try:
            if "instance_id" in call.path:
                return (
                    await self._operator.instance(call.scope, call.path["instance_id"])
                ).tenant_id
            if "key_id" in call.path:
                return (await self._operator.key(call.scope, call.path["key_id"])).tenant_id
        except DomainError:
            pass
        return "*"

    def _problem(self, error: DomainError, request_id: str) -> ApiResponse:
        status, body = problem_bytes(error, request_id)
        headers = {"content-type": MEDIA_TYPE, "x-request-id": request_id}
        return ApiResponse(status=status, body=body, headers=headers)


def _json_headers(request_id: str) -> dict[str, str]:
    return {"content-type": "application/json", "x-request-id": request_id}


def _match(method: str, path: str) -> tuple[Route | None, dict[str, str]]:
    for route in ROUTES:
        found = route.pattern.match(path)
        if found and route.method == method:
            return route, found.groupdict()
    return None, {}


def route_of(method: str, path: str) -> tuple[Route, dict[str, str]]:
    """The route and its path parameters (validated), or the 404 / 405 problem."""
    route, params = _match(method, path)
    if route is None:
        if any(r.pattern.match(path) for r in ROUTES):
            raise MethodNotAllowed(f"{path} does not answer {method[:16]}")
        raise UnknownAction(f"no admin API route {path[:200]!r}")
    if route.handler is None:
        raise MethodNotAllowed(f"{path} does not answer {method[:16]}")
    schemas = Schemas(COMPONENTS)
    for name, value in params.items():
        try:
            schemas.check(value, PATH_PARAMETERS[name], name)
        except DomainError:
            # A malformed id names nothing: the same answer as an id nobody has.
            raise NotFound(f"no {name.removesuffix('_id')} {value[:64]!r}") from None
    return route, params
