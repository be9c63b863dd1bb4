"""The one pipeline every signed vendor call goes through, driving a vendor's pure hooks.

Each vendor (``tencent``, ``alibaba``, ``huawei``) supplies a ``VendorHooks``: sans-I/O
functions that read its envelope, check its clock, verify its signature, route its actions,
parse an action's parameters, name its replay key and render its answers and errors, in the
spirit of httpx's auth flows and moto's ``BaseResponse``. This module runs the steps in one
order for all of them, so a rule holds everywhere once written here:

1. a request id; the ``Host`` the request names must be one this deployment serves
   (``KEYTURN_SERVED_HOSTS``, any when unset);
2. early routing, where the vendor's gateway routes first (Huawei); the others route after 4;
3. the envelope: what identifies and authenticates the call, read with bounded work (no action
   parameter is read yet: nothing a client sends is expanded before its signature verified);
4. authentication: clock window, access key, signature;
5. binding: the action's parameters, parsed only now, into the gate's ``CallInfo``;
6. the gate: authorization, the tenant's rate limit, then **the replay check**: a replay key is
   remembered (in the store, shared by every node) only for a call that verified, is allowed
   and is within its rate limit, right before it runs. A call refused for any other reason
   used nothing up and may be sent again; a replay is refused with the vendor's code and runs
   nothing. Then the audit, the action and its answer.

Refusals before the gate are audited here (unauthenticated ones within a per-source budget);
from the gate on, the gate audits. Domain errors become the vendor's error; anything else is
logged and answered as the vendor's internal error, never a traceback.

Every call, answered or refused at any step, is counted once here (``Services.metrics``:
vendor, action and code, the action label only once routed, so never a client's string), and
runs under a ``RequestContext`` (``keyturn.core.logcontext``) that log records are tagged with.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from keyturn.core.errors import (
    DomainError,
    HostNotServed,
    InternalError,
    NonceReused,
    RequestThrottled,
    RequestTooLarge,
)
from keyturn.core.logcontext import CURRENT_REQUEST, RequestContext
from keyturn.core.metrics import INTERRUPTED, OK_CODE, RATE_LIMITED, REPLAYED, UNKNOWN_ACTION
from keyturn.core.model import AccessKey
from keyturn.dialects._wire import WireRequest, WireResponse, caller_of
from keyturn.service.context import Answer, Caller
from keyturn.service.facade import Services
from keyturn.service.gate import CallInfo

log = logging.getLogger(__name__)

E = TypeVar("E")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Bound:
    """A routed, authenticated call with its parameters parsed: what the gate needs to know
    and the action to run."""

    info: CallInfo
    invoke: Callable[[Services, Caller], Awaitable[Answer]]


@dataclass(frozen=True, slots=True)
class ReplayKey:
    """What identifies a signed request for replay protection, and how long to remember it
    (as long as its timestamp could still be accepted)."""

    nonce: str
    ttl_seconds: float


@dataclass(frozen=True, slots=True)
class ReplayCheck:
    """The gate's admission of a call with a replay key: remember the key (refusing a replay
    with the vendor's message), or forget it again when the call did not run after all."""

    services: Services
    scope: str
    key: ReplayKey
    message: str

    async def admit(self) -> None:
        try:
            await self.services.replay.remember(self.scope, self.key.nonce, self.key.ttl_seconds)
        except NonceReused:
            raise NonceReused(self.message) from None

    async def release(self) -> None:
        await self.services.replay.forget(self.scope, self.key.nonce)


class VendorHooks(Protocol, Generic[E, R]):
    """A vendor protocol as pure functions over one request. ``E`` is the vendor's envelope
    (the call's identity and signature material), ``R`` its route (product and action)."""

    name: str
    #: The message of a replay refusal, in the vendor's words.
    replay_message: str

    def claims(self, request: WireRequest) -> bool: ...

    def new_request_id(self) -> str: ...

    def envelope(self, request: WireRequest) -> E:
        """Read the call's identity (action, key id, timestamp, signature) with bounded work;
        never the action's own parameters."""
        ...

    def claimed_key(self, request: WireRequest, envelope: E | None) -> str:
        """The key id a request claims, for the audit of its refusal ("" if unreadable)."""
        ...

    def check_clock(self, envelope: E, now: datetime) -> None: ...

    def key_id(self, envelope: E) -> str: ...

    def verify(self, envelope: E, request: WireRequest, secret: str) -> None:
        """Raise an ``AuthError`` unless the signature matches."""
        ...

    def early_route(self, request: WireRequest) -> R | None:
        """The route, for a vendor whose gateway matches the API before it authenticates
        (Huawei: ``APIGW.0101`` first); None routes after authentication with ``route``."""
        ...

    def route(self, envelope: E, request: WireRequest) -> R: ...

    def bind(self, route: R, envelope: E, request: WireRequest, caller: Caller) -> Bound:
        """Parse the action's parameters (only now, after authentication) into a ``Bound``."""
        ...

    def replay_key(self, envelope: E, request: WireRequest, mutating: bool) -> ReplayKey | None:
        """The request's replay key; None when the vendor does not remember this call."""
        ...

    def audit_action(self, route: R | None, envelope: E | None, request: WireRequest) -> str:
        """The action a refusal before the gate is recorded under."""
        ...

    def neutral_action(self, route: R | None) -> str: ...

    def code(self, error: DomainError, route: R | None) -> str:
        """The vendor's error code for ``error``."""
        ...

    def render(self, answer: Answer, request_id: str, request: WireRequest) -> WireResponse: ...

    def render_error(
        self, error: DomainError, route: R | None, request_id: str, request: WireRequest
    ) -> WireResponse: ...


class SignedCallPipeline(Generic[E, R]):
    """A ``Dialect`` that serves one vendor's signed calls through ``hooks``."""

    def __init__(
        self, hooks: VendorHooks[E, R], services: Services, served_hosts: Sequence[str] = ()
    ) -> None:
        self.hooks = hooks
        self.name = hooks.name
        self._services = services
        self._served = frozenset(host.lower() for host in served_hosts)
        self._metrics = services.metrics

    def claims(self, request: WireRequest) -> bool:
        return self.hooks.claims(request)

    def too_large(self, request: WireRequest) -> WireResponse:
        error = RequestTooLarge("The request body exceeds 1 MiB.")
        return self.hooks.render_error(error, None, self.hooks.new_request_id(), request)

    async def handle(self, request: WireRequest) -> WireResponse:
        started = time.perf_counter()
        request_id = self.hooks.new_request_id()
        context = RequestContext(request_id, self.name)
        token = CURRENT_REQUEST.set(context)
        code = INTERRUPTED  # unless answered
        try:
            response, code = await self._handle(request, request_id, context)
            return response
        finally:
            seconds = time.perf_counter() - started
            action = context.action or UNKNOWN_ACTION
            self._metrics.api_call(self.name, action, code, seconds)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s answered %s", action, code, extra={"duration": round(seconds, 6)})
            CURRENT_REQUEST.reset(token)

    async def _handle(
        self, request: WireRequest, request_id: str, context: RequestContext
    ) -> tuple[WireResponse, str]:
        """The response and the vendor code it carries (``OK_CODE`` for an answer)."""
        hooks = self.hooks
        envelope: E | None = None
        route: R | None = None
        caller: Caller | None = None
        gated = False  # from the gate on, the gate audits the call itself
        try:
            self._check_host(request)
            route = hooks.early_route(request)
            if route is not None:
                # A route's action is one of keyturn's own names: a bounded label.
                context.action = hooks.audit_action(route, None, request)
            envelope = hooks.envelope(request)
            caller = await self._authenticate(envelope, request, request_id)
            context.tenant = caller.tenant_id
            if route is None:
                route = hooks.route(envelope, request)
                context.action = hooks.audit_action(route, None, request)
            bound = hooks.bind(route, envelope, request, caller)
            routed = route
            gated = True
            answer = await self._services.gate.run(
                caller,
                bound.info,
                lambda scoped: bound.invoke(self._services, scoped),
                lambda error: hooks.code(error, routed),
                admission=self._replay_check(envelope, request, caller, bound.info.mutating),
            )
            context.task_id = answer.task_id
            return hooks.render(answer, request_id, request), OK_CODE
        except DomainError as error:
            if isinstance(error, RequestThrottled):
                self._metrics.refused(self.name, RATE_LIMITED)
            elif isinstance(error, NonceReused):
                self._metrics.refused(self.name, REPLAYED)
            if not gated:
                await self._audit_refusal(request, request_id, envelope, route, caller, error)
            return hooks.render_error(error, route, request_id, request), hooks.code(error, route)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            internal = InternalError()
            if not gated:
                await self._audit_refusal(request, request_id, envelope, route, caller, internal)
            return hooks.render_error(internal, None, request_id, request), hooks.code(
                internal, None
            )

    def _check_host(self, request: WireRequest) -> None:
        """The signed ``Host`` must name this deployment, when it says which names it serves:
        a request signed for another deployment sharing a key is refused."""
        if not self._served:
            return
        # tccli sends a scheme-qualified Host header (``http://127.0.0.1:9000``).
        host = request.header("host").rsplit("://", 1)[-1].strip().lower()
        bare = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if host not in self._served and bare not in self._served:
            raise HostNotServed("The request was signed for a host this server does not serve.")

    async def _authenticate(self, envelope: E, request: WireRequest, request_id: str) -> Caller:
        hooks = self.hooks
        hooks.check_clock(envelope, self._services.clock.now())
        key: AccessKey = await self._services.credentials.access_key(hooks.key_id(envelope))
        hooks.verify(envelope, request, key.secret.reveal())
        return caller_of(request, request_id, key_id=key.id, tenant_id=key.tenant_id)

    def _replay_check(
        self, envelope: E, request: WireRequest, caller: Caller, mutating: bool
    ) -> ReplayCheck | None:
        found = self.hooks.replay_key(envelope, request, mutating)
        if found is None:
            return None
        return ReplayCheck(self._services, caller.key_id, found, self.hooks.replay_message)

    async def _audit_refusal(
        self,
        request: WireRequest,
        request_id: str,
        envelope: E | None,
        route: R | None,
        caller: Caller | None,
        error: DomainError,
    ) -> None:
        """Audit a request refused before the gate; unauthenticated, it has no tenant and the
        key is the one it claimed."""
        hooks = self.hooks
        try:
            claimed = hooks.claimed_key(request, envelope)
        except DomainError:
            claimed = ""
        await self._services.gate.rejected(
            caller or caller_of(request, request_id, key_id=claimed),
            vendor=self.name,
            action=hooks.audit_action(route, envelope, request),
            code=hooks.code(error, route),
            neutral_action=hooks.neutral_action(route),
        )
