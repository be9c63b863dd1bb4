"""The Tencent Cloud API 3.0 dialect: authenticate, route to a product's action, render.

Requests are authenticated first (clock window, access key, signature), then routed by the TC3
scope's service (or, for legacy signatures, by the version and action, falling back to the
host's service prefix) plus the action and version. Any failure becomes the product's Tencent
error code inside an HTTP 200 answer; nothing a client sends produces a 5xx. Replays are refused
with ``AuthFailure.SignatureFailure`` once the gate let the call through, so a call refused
without effect (denied, throttled, unauditable) may be sent again. A legacy signature carries a
random ``Nonce``: any reuse of its Nonce and Timestamp is a replay. TC3 carries none and its
``X-TC-Timestamp`` counts whole seconds, so the SDK and tccli sign two identical calls made in
the same second byte for byte alike. keyturn therefore remembers the TC3 signatures of changes
only (a replayed reset is the harm; the very same reset sent twice within one second is refused
as a replay, where it would otherwise meet the running task), and serves identical reads (task
polling repeats one ``DescribeTaskInfo`` many times a second). The SDKs re-sign every retry,
and their back-off (1 s and up) gives a new timestamp.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from keyturn.core.errors import (
    DomainError,
    InternalError,
    NonceReused,
    RequestTooLarge,
    SignatureExpired,
    SignatureInvalid,
    UnknownAction,
    UnsupportedVersion,
)
from keyturn.dialects._wire import WireRequest, WireResponse, caller_of
from keyturn.dialects.tencent.envelope import TencentCall, parse_call, render, render_error
from keyturn.dialects.tencent.errors import tencent_code
from keyturn.dialects.tencent.params import Params
from keyturn.dialects.tencent.product import Handler, TencentProduct
from keyturn.dialects.tencent.signing import verify_legacy, verify_tc3
from keyturn.service.context import Caller
from keyturn.service.facade import Services
from keyturn.service.gate import CallInfo

log = logging.getLogger(__name__)

#: How far a request's timestamp may be from the server clock (Tencent documents 5 minutes).
CLOCK_WINDOW_SECONDS = 300


class TencentDialect:
    """Serve Tencent products over ``POST /`` and ``GET /``."""

    name = "tencent"

    def __init__(self, services: Services, products: Sequence[TencentProduct]) -> None:
        self._services = services
        self._by_service = {p.service: p for p in products}
        self._by_version: dict[str, list[TencentProduct]] = {}
        for product in products:
            self._by_version.setdefault(product.version, []).append(product)

    def claims(self, request: WireRequest) -> bool:
        if request.path != "/":
            return False
        return (
            request.header("authorization").startswith("TC3-")
            or "x-tc-action" in request.headers
            or "SecretId=" in request.query
            or request.header("content-type").startswith("application/x-www-form-urlencoded")
        )

    def too_large(self, request: WireRequest) -> WireResponse:
        error = RequestTooLarge("The request body exceeds 1 MiB.")
        return render_error(tencent_code(error), error.message, str(uuid.uuid4()))

    async def handle(self, request: WireRequest) -> WireResponse:
        request_id = str(uuid.uuid4())
        product: TencentProduct | None = None
        call: TencentCall | None = None
        caller: Caller | None = None
        gated = False  # from the gate on, the gate audits the call itself
        try:
            call = parse_call(request)
            caller = await self._authenticate(request, call, request_id)
            product = self._route(call, request)
            handler = product.actions.get(call.action)
            if handler is None:
                raise UnknownAction(f"The action `{call.action}` does not exist.")
            params = Params(call.params)
            instance = call.params.get(product.instance_param)
            info = CallInfo(
                vendor=self.name,
                action=f"{product.service}:{call.action}",
                neutral_action=product.changes.get(call.action, ""),
                mutating=call.action in product.changes,
                resource_name=product.resource_name,
                instance_id=instance if isinstance(instance, str) else None,
                region=call.region or "*",
            )
            codes = product.codes
            gated = True
            payload = await self._services.gate.run(
                caller,
                info,
                lambda: self._execute(handler, params, call, caller, mutating=info.mutating),
                lambda error: tencent_code(error, codes),
            )
            return render(payload, request_id)
        except DomainError as error:
            code = tencent_code(error, product.codes if product else None)
            if not gated:
                await self._audit_refusal(request, request_id, call, caller, product, code)
            return render_error(code, error.message, request_id)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            internal = InternalError()
            if not gated:
                code = tencent_code(internal)
                await self._audit_refusal(request, request_id, call, caller, product, code)
            return render_error(tencent_code(internal), internal.message, request_id)

    async def _audit_refusal(
        self,
        request: WireRequest,
        request_id: str,
        call: TencentCall | None,
        caller: Caller | None,
        product: TencentProduct | None,
        code: str,
    ) -> None:
        """Audit a request refused before the gate; unauthenticated, it has no tenant and the
        key is the SecretId it claimed."""
        service = product.service if product else (call.service if call else None)
        action = call.action if call else ""
        await self._services.gate.rejected(
            caller or caller_of(request, request_id, key_id=call.secret_id if call else ""),
            vendor=self.name,
            action=f"{service}:{action}" if service else action,
            code=code,
            neutral_action=product.changes.get(action, "") if product else "",
        )

    async def _authenticate(
        self, request: WireRequest, call: TencentCall, request_id: str
    ) -> Caller:
        self._check_clock(call.timestamp)
        key = await self._services.credentials.access_key(call.secret_id)
        secret = key.secret.reveal()
        if call.tc3 is not None:
            verify_tc3(
                auth=call.tc3,
                secret_key=secret,
                method=request.method,
                query=request.query,
                headers=request.headers,
                payload=request.body,
                timestamp=call.timestamp,
            )
        else:
            verify_legacy(
                secret_key=secret,
                method=request.method,
                host=request.header("host"),
                params=call.legacy_params or {},
                signature=call.signature,
            )
        return caller_of(request, request_id, key_id=key.id, tenant_id=key.tenant_id)

    async def _execute(
        self, handler: Handler, params: Params, call: TencentCall, caller: Caller, *, mutating: bool
    ) -> dict[str, Any]:
        # The replay check runs once the gate let the call through, right before the handler:
        # a refusal that changed nothing (denied, throttled, an unwritable audit log) leaves
        # the request unused, so a client may send the very same request again.
        self._refuse_replay(call, caller.key_id, mutating=mutating)
        return await handler(self._services, caller, params)

    def _refuse_replay(self, call: TencentCall, key_id: str, *, mutating: bool) -> None:
        """Remember a verified request's Nonce (legacy) or signature (TC3, changes only) for as
        long as its timestamp stays acceptable; ``SignatureInvalid`` if it was seen already."""
        if call.tc3 is not None:
            if not mutating:
                return
            nonce = "tc3:" + call.tc3.signature
        else:
            legacy = call.legacy_params or {}
            # The SDKs always send a Nonce; a hand-made request without one is held to its
            # signature instead.
            nonce = (
                f"legacy:{call.timestamp}:{legacy['Nonce']}"
                if "Nonce" in legacy
                else "legacy-signature:" + call.signature
            )
        try:
            # A timestamp may be up to the window ahead of the server clock: keep it for both.
            self._services.nonces.remember(key_id, nonce, 2 * CLOCK_WINDOW_SECONDS)
        except NonceReused:
            raise SignatureInvalid(
                "This signed request was already received (a replay); sign it again, in a "
                "later second."
            ) from None

    def _check_clock(self, timestamp: str) -> None:
        if not timestamp.isdigit():
            raise SignatureExpired("The request timestamp is missing or not an integer.")
        now = self._services.clock.now().timestamp()
        if abs(now - int(timestamp)) > CLOCK_WINDOW_SECONDS:
            raise SignatureExpired(
                f"The request timestamp is more than {CLOCK_WINDOW_SECONDS} seconds from the "
                "server time."
            )

    def _route(self, call: TencentCall, request: WireRequest) -> TencentProduct:
        if call.service is not None:
            product = self._by_service.get(call.service)
        else:
            product = self._legacy_product(call, request)
        if product is None:
            raise UnknownAction(f"The action `{call.action}` does not exist.")
        if call.version != product.version:
            raise UnsupportedVersion(
                f"The version `{call.version}` of {product.service} does not exist."
            )
        return product

    def _legacy_product(self, call: TencentCall, request: WireRequest) -> TencentProduct | None:
        # Legacy signatures name no service: the host prefix (redis.tencentcloudapi.com) decides
        # if it names one, else the only product with that version and action.
        host = request.header("host").split("://")[-1]
        prefix = host.split(".", 1)[0]
        if prefix in self._by_service:
            return self._by_service[prefix]
        candidates = [p for p in self._by_version.get(call.version, []) if call.action in p.actions]
        return candidates[0] if len(candidates) == 1 else None
