"""The Tencent Cloud API 3.0 dialect: the vendor hooks the signed-call pipeline drives.

Requests are authenticated first (clock window, access key, signature), then routed by the TC3
scope's service (or, for legacy signatures, by the version and action, falling back to the
host's service prefix) plus the action and version. Any failure becomes the product's Tencent
error code inside an HTTP 200 answer; nothing a client sends produces a 5xx.

Replay keys: a legacy signature carries a random ``Nonce``, and any reuse of its Nonce and
Timestamp is a replay. TC3 carries none and its ``X-TC-Timestamp`` counts whole seconds, so the
SDK and tccli sign two identical calls made in the same second byte for byte alike. keyturn
therefore remembers the TC3 signatures of changes only (a replayed reset is the harm; the very
same reset sent twice within one second is refused as a replay, where it would otherwise meet
the running task), and serves identical reads (task polling repeats one ``DescribeTaskInfo``
many times a second). The SDKs re-sign every retry, and their back-off (1 s and up) gives a new
timestamp. Keys are remembered for twice the clock window: a timestamp may be up to the window
ahead of the server clock.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TypeAlias

from keyturn.core.errors import (
    DomainError,
    SignatureExpired,
    UnknownAction,
    UnsupportedVersion,
)
from keyturn.dialects._wire import WireRequest, WireResponse
from keyturn.dialects.actions import ActionRoute, ProductHooks, by_version
from keyturn.dialects.pipeline import Bound, ReplayKey, SignedCallPipeline
from keyturn.dialects.tencent.envelope import (
    TencentEnvelope,
    call_params,
    read_envelope,
    render,
    render_error,
)
from keyturn.dialects.tencent.errors import ERRORS
from keyturn.dialects.tencent.params import Params
from keyturn.dialects.tencent.product import TencentProduct
from keyturn.dialects.tencent.signing import verify_legacy, verify_tc3
from keyturn.service.context import Caller
from keyturn.service.facade import Services

#: How far a request's timestamp may be from the server clock (Tencent documents 5 minutes).
CLOCK_WINDOW_SECONDS = 300
#: A Unix timestamp in seconds: ASCII digits only, and short (``str.isdigit`` takes ``²``).
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


TencentRoute: TypeAlias = ActionRoute[TencentProduct, Params]


class TencentHooks(ProductHooks[TencentRoute, str]):
    """Tencent's envelope, signatures, routing and answers (``POST /`` and ``GET /``)."""

    name = "tencent"
    errors = ERRORS
    respond = staticmethod(render)
    replay_message = (
        "This signed request was already received (a replay); sign it again, in a later second."
    )

    def __init__(self, products: Sequence[TencentProduct]) -> None:
        self._by_service = {p.service: p for p in products}
        self._by_version = by_version(products)

    def claims(self, request: WireRequest) -> bool:
        if request.path != "/":
            return False
        return (
            request.header("authorization").startswith("TC3-")
            or "x-tc-action" in request.headers
            or "SecretId=" in request.query
            or request.header("content-type").startswith("application/x-www-form-urlencoded")
        )

    def new_request_id(self) -> str:
        return str(uuid.uuid4())

    def envelope(self, request: WireRequest) -> TencentEnvelope:
        return read_envelope(request)

    def claimed_key(self, request: WireRequest, envelope: TencentEnvelope | None) -> str:
        return envelope.secret_id if envelope is not None else ""

    def check_clock(self, envelope: TencentEnvelope, now: datetime) -> None:
        if not _TIMESTAMP.fullmatch(envelope.timestamp):
            raise SignatureExpired("The request timestamp is missing or not an integer.")
        if abs(now.timestamp() - int(envelope.timestamp)) > CLOCK_WINDOW_SECONDS:
            raise SignatureExpired(
                f"The request timestamp is more than {CLOCK_WINDOW_SECONDS} seconds from the "
                "server time."
            )

    def key_id(self, envelope: TencentEnvelope) -> str:
        return envelope.secret_id

    def verify(self, envelope: TencentEnvelope, request: WireRequest, secret: str) -> None:
        if envelope.tc3 is not None:
            verify_tc3(
                auth=envelope.tc3, secret_key=secret, request=request, timestamp=envelope.timestamp
            )
        else:
            verify_legacy(
                secret_key=secret,
                method=request.method,
                host=request.header("host"),
                params=envelope.legacy_params or {},
                signature=envelope.signature,
            )

    def route(self, envelope: TencentEnvelope, request: WireRequest) -> TencentRoute:
        if envelope.service is not None:
            product = self._by_service.get(envelope.service)
        else:
            product = self._legacy_product(envelope, request)
        if product is None:
            raise UnknownAction(f"The action `{envelope.action[:100]}` does not exist.")
        if envelope.version != product.version:
            raise UnsupportedVersion(
                f"The version `{envelope.version[:100]}` of {product.service} does not exist."
            )
        handler = product.actions.get(envelope.action)
        if handler is None:
            raise UnknownAction(f"The action `{envelope.action[:100]}` does not exist.")
        return ActionRoute(product, envelope.action, handler)

    def bind(
        self, route: TencentRoute, envelope: TencentEnvelope, request: WireRequest, caller: Caller
    ) -> Bound:
        params = Params(call_params(envelope, request))
        instance = params.raw(route.product.instance_param)
        accounts = route.product.accounts.get(route.action)
        return route.bind(
            self.name,
            params,
            instance_id=instance if isinstance(instance, str) else None,
            region=envelope.region or "*",
            accounts=accounts(params) if accounts is not None else (),
        )

    def replay_key(
        self, envelope: TencentEnvelope, request: WireRequest, mutating: bool
    ) -> ReplayKey | None:
        ttl = 2 * CLOCK_WINDOW_SECONDS
        if envelope.tc3 is not None:
            return ReplayKey("tc3:" + envelope.tc3.signature, ttl) if mutating else None
        legacy = envelope.legacy_params or {}
        # The SDKs always send a Nonce; a hand-made request without one is held to its
        # signature instead.
        if "Nonce" in legacy:
            return ReplayKey(f"legacy:{envelope.timestamp}:{legacy['Nonce']}", ttl)
        return ReplayKey("legacy-signature:" + envelope.signature, ttl)

    def audit_action(
        self, route: TencentRoute | None, envelope: TencentEnvelope | None, request: WireRequest
    ) -> str:
        if route is not None:
            return route.qualified
        if envelope is None:
            return ""
        return f"{envelope.service}:{envelope.action}" if envelope.service else envelope.action

    def respond_error(
        self, error: DomainError, entry: str, request_id: str, request: WireRequest
    ) -> WireResponse:
        return render_error(entry, error.message, request_id)

    def _legacy_product(
        self, envelope: TencentEnvelope, request: WireRequest
    ) -> TencentProduct | None:
        # Legacy signatures name no service: the host prefix (redis.tencentcloudapi.com) decides
        # if it names one, else the only product with that version and action.
        host = request.header("host").split("://")[-1]
        prefix = host.split(".", 1)[0]
        if prefix in self._by_service:
            return self._by_service[prefix]
        candidates = [
            p for p in self._by_version.get(envelope.version, []) if envelope.action in p.actions
        ]
        return candidates[0] if len(candidates) == 1 else None


def TencentDialect(
    services: Services, products: Sequence[TencentProduct], served_hosts: Sequence[str] = ()
) -> SignedCallPipeline[TencentEnvelope, TencentRoute]:
    """The Tencent dialect: ``TencentHooks`` on the signed-call pipeline."""
    return SignedCallPipeline(TencentHooks(products), services, served_hosts)
