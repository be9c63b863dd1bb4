"""The Alibaba Cloud RPC dialect: the vendor hooks the signed-call pipeline drives.

A request is authenticated first: clock window (15 minutes), access key, signature (ACS3 or
RPC v1). Only then is it routed by version and action to a product. Its ``SignatureNonce`` is
its replay key, remembered for twice the clock window (a time may be up to the window ahead of
the server clock) once the call passed the gate (the pipeline's rule). Any failure becomes the
product's Alibaba error code with its HTTP status; nothing a client can send produces a 5xx,
which is reserved for faults of keyturn itself and for a synchronous reset outliving its
deadline (503). Parameters are flat strings from the query string and a form body, at most
``MAX_PARAMETERS`` of them, read once (the RPC v1 signature covers all of them).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TypeAlias

from keyturn.core.errors import DomainError, UnknownAction, UnsupportedVersion
from keyturn.dialects._wire import WireRequest, WireResponse
from keyturn.dialects.actions import ActionRoute, ProductHooks, by_version
from keyturn.dialects.alibaba.envelope import AlibabaCall, parse_call, render, render_error
from keyturn.dialects.alibaba.errors import ERRORS, AlibabaCode, message_of
from keyturn.dialects.alibaba.params import Params
from keyturn.dialects.alibaba.product import AlibabaProduct
from keyturn.dialects.alibaba.signing import check_timestamp, verify_acs3, verify_rpc
from keyturn.dialects.pipeline import Bound, ReplayKey, SignedCallPipeline
from keyturn.service.context import Caller
from keyturn.service.facade import Services

#: How far a request's time may be from the server clock.
CLOCK_WINDOW_SECONDS = 15 * 60
#: RPC v1 markers in a query string: ``AccessKeyId`` and ``Signature`` parameters.
_RPC_KEY = re.compile(r"(?:^|&)AccessKeyId=")
_RPC_SIGNATURE = re.compile(r"(?:^|&)Signature=")


AlibabaRoute: TypeAlias = ActionRoute[AlibabaProduct, Params]


class AlibabaHooks(ProductHooks[AlibabaRoute, AlibabaCode]):
    """Alibaba's envelopes, signatures, routing and answers (the SDKs POST to ``/`` with
    parameters in the query string)."""

    name = "alibaba"
    errors = ERRORS
    respond = staticmethod(render)
    replay_message = "Specified signature nonce was used already."

    def __init__(self, products: Sequence[AlibabaProduct]) -> None:
        self._by_version = by_version(products)

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

    def new_request_id(self) -> str:
        return str(uuid.uuid4()).upper()

    def envelope(self, request: WireRequest) -> AlibabaCall:
        return parse_call(request)

    def claimed_key(self, request: WireRequest, envelope: AlibabaCall | None) -> str:
        return envelope.access_key_id if envelope is not None else ""

    def check_clock(self, envelope: AlibabaCall, now: datetime) -> None:
        check_timestamp(envelope.timestamp, now, CLOCK_WINDOW_SECONDS)

    def key_id(self, envelope: AlibabaCall) -> str:
        return envelope.access_key_id

    def verify(self, envelope: AlibabaCall, request: WireRequest, secret: str) -> None:
        if envelope.acs3 is not None:
            verify_acs3(auth=envelope.acs3, secret=secret, request=request, query=envelope.query)
        else:
            verify_rpc(
                secret=secret,
                method=request.method,
                params=envelope.params,
                signature=envelope.signature,
            )

    def route(self, envelope: AlibabaCall, request: WireRequest) -> AlibabaRoute:
        products = self._by_version.get(envelope.version)
        if not products:
            raise UnsupportedVersion()
        for product in products:
            handler = product.actions.get(envelope.action)
            if handler is not None:
                return ActionRoute(product, envelope.action, handler)
        raise UnknownAction()

    def bind(
        self, route: AlibabaRoute, envelope: AlibabaCall, request: WireRequest, caller: Caller
    ) -> Bound:
        raw = envelope.params
        account = raw.get("AccountName")
        named = bool(account) and route.action in route.product.account_actions
        return route.bind(
            self.name,
            Params(raw),
            instance_id=route.product.resource_id(raw),
            region=raw.get("RegionId") or "*",
            accounts=(account,) if account and named else (),
        )

    def replay_key(
        self, envelope: AlibabaCall, request: WireRequest, mutating: bool
    ) -> ReplayKey | None:
        return ReplayKey(envelope.nonce, 2 * CLOCK_WINDOW_SECONDS)

    def audit_action(
        self, route: AlibabaRoute | None, envelope: AlibabaCall | None, request: WireRequest
    ) -> str:
        if route is not None:
            return route.qualified
        return envelope.action if envelope is not None else ""

    def respond_error(
        self, error: DomainError, entry: AlibabaCode, request_id: str, request: WireRequest
    ) -> WireResponse:
        return render_error(
            status=entry.status,
            code=entry.code,
            message=message_of(error, entry),
            request_id=request_id,
            host=request.header("host"),
        )


def AlibabaDialect(
    services: Services, products: Sequence[AlibabaProduct], served_hosts: Sequence[str] = ()
) -> SignedCallPipeline[AlibabaCall, AlibabaRoute]:
    """The Alibaba dialect: ``AlibabaHooks`` on the signed-call pipeline."""
    return SignedCallPipeline(AlibabaHooks(products), services, served_hosts)
