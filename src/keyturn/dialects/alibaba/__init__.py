"""The Alibaba Cloud RPC dialect: authenticate, route to a product's action, render.

A request is authenticated first: clock window (15 minutes), access key, signature (ACS3 or
RPC v1), then its nonce is remembered so the same signed request cannot be replayed. Only then
is it routed by version and action to a product. Any failure becomes the product's Alibaba
error code with its HTTP status; nothing a client can send produces a 5xx, which is reserved
for faults of keyturn itself and for a synchronous reset outliving its deadline (503).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Sequence

from keyturn.core.errors import (
    DomainError,
    InternalError,
    RequestTooLarge,
    UnknownAction,
    UnsupportedVersion,
)
from keyturn.dialects._wire import WireRequest, WireResponse, caller_of
from keyturn.dialects.alibaba.envelope import AlibabaCall, parse_call, render, render_error
from keyturn.dialects.alibaba.errors import alibaba_code, message_of
from keyturn.dialects.alibaba.params import Params
from keyturn.dialects.alibaba.product import AlibabaProduct, Handler
from keyturn.dialects.alibaba.signing import check_timestamp, verify_acs3, verify_rpc
from keyturn.service.context import Caller
from keyturn.service.facade import Services
from keyturn.service.gate import CallInfo

log = logging.getLogger(__name__)

#: How far a request's time may be from the server clock; nonces are kept as long.
CLOCK_WINDOW_SECONDS = 15 * 60
#: RPC v1 markers in a query string: ``AccessKeyId`` and ``Signature`` parameters.
_RPC_KEY = re.compile(r"(?:^|&)AccessKeyId=")
_RPC_SIGNATURE = re.compile(r"(?:^|&)Signature=")


class AlibabaDialect:
    """Serve Alibaba Cloud RPC products over ``/`` (the SDKs POST with parameters in the
    query string)."""

    name = "alibaba"

    def __init__(self, services: Services, products: Sequence[AlibabaProduct]) -> None:
        self._services = services
        self._by_version: dict[str, list[AlibabaProduct]] = {}
        for product in products:
            self._by_version.setdefault(product.version, []).append(product)

    def claims(self, request: WireRequest) -> bool:
        if request.path != "/":
            return False
        authorization = request.header("authorization")
        if authorization.startswith("ACS3-"):
            return True
        # Tencent shares "/": never take a request that carries Tencent's own markers.
        if authorization.startswith("TC3-") or "x-tc-action" in request.headers:
            return False
        return "x-acs-action" in request.headers or (
            _RPC_KEY.search(request.query) is not None
            and _RPC_SIGNATURE.search(request.query) is not None
        )

    def too_large(self, request: WireRequest) -> WireResponse:
        error = RequestTooLarge("The request body exceeds 1 MiB.")
        return self._error(error, None, _request_id(), request)

    async def handle(self, request: WireRequest) -> WireResponse:
        request_id = _request_id()
        product: AlibabaProduct | None = None
        call: AlibabaCall | None = None
        caller: Caller | None = None
        gated = False  # from the gate on, the gate audits the call itself
        try:
            call = parse_call(request)
            caller = await self._authenticate(request, call, request_id)
            product, handler = self._route(call)
            params = Params(call.params)
            instance = call.params.get(product.instance_param)
            info = CallInfo(
                vendor=self.name,
                action=f"{product.service}:{call.action}",
                neutral_action=product.changes.get(call.action, ""),
                mutating=call.action in product.changes,
                resource_name=product.resource_name,
                instance_id=instance if isinstance(instance, str) else None,
                region=str(call.params.get("RegionId") or "*"),
            )
            codes = product.codes
            gated = True
            payload = await self._services.gate.run(
                caller,
                info,
                lambda: handler(self._services, caller, params),
                lambda error: alibaba_code(error, codes).code,
            )
            return render(payload, request_id)
        except DomainError as error:
            if not gated:
                await self._audit_refusal(request, request_id, call, caller, product, error)
            return self._error(error, product, request_id, request)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            if not gated:
                await self._audit_refusal(request, request_id, call, caller, None, InternalError())
            return self._error(InternalError(), None, request_id, request)

    async def _audit_refusal(
        self,
        request: WireRequest,
        request_id: str,
        call: AlibabaCall | None,
        caller: Caller | None,
        product: AlibabaProduct | None,
        error: DomainError,
    ) -> None:
        """Audit a request refused before the gate; unauthenticated, it has no tenant and the
        key is the AccessKeyId it claimed."""
        action = call.action if call else ""
        await self._services.gate.rejected(
            caller or caller_of(request, request_id, key_id=call.access_key_id if call else ""),
            vendor=self.name,
            action=f"{product.service}:{action}" if product else action,
            code=alibaba_code(error, product.codes if product else None).code,
            neutral_action=product.changes.get(action, "") if product else "",
        )

    async def _authenticate(
        self, request: WireRequest, call: AlibabaCall, request_id: str
    ) -> Caller:
        check_timestamp(call.timestamp, self._services.clock.now(), CLOCK_WINDOW_SECONDS)
        key = await self._services.credentials.access_key(call.access_key_id)
        secret = key.secret.reveal()
        if call.acs3 is not None:
            verify_acs3(
                auth=call.acs3,
                secret=secret,
                method=request.method,
                path=request.path,
                query=call.query,
                headers=request.headers,
                body=request.body,
            )
        else:
            verify_rpc(
                secret=secret, method=request.method, params=call.params, signature=call.signature
            )
        # Only a verified request may use up a nonce, so forgeries cannot block real ones.
        self._services.nonces.remember(key.id, call.nonce, ttl_seconds=CLOCK_WINDOW_SECONDS)
        return caller_of(request, request_id, key_id=key.id, tenant_id=key.tenant_id)

    def _route(self, call: AlibabaCall) -> tuple[AlibabaProduct, Handler]:
        products = self._by_version.get(call.version)
        if not products:
            raise UnsupportedVersion()
        for product in products:
            handler = product.actions.get(call.action)
            if handler is not None:
                return product, handler
        raise UnknownAction()

    @staticmethod
    def _error(
        error: DomainError,
        product: AlibabaProduct | None,
        request_id: str,
        request: WireRequest,
    ) -> WireResponse:
        entry = alibaba_code(error, product.codes if product else None)
        return render_error(
            status=entry.status,
            code=entry.code,
            message=message_of(error, entry),
            request_id=request_id,
            host=request.header("host"),
        )


def _request_id() -> str:
    return str(uuid.uuid4()).upper()
