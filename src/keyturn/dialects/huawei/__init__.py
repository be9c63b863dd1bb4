"""The Huawei Cloud REST dialect: the vendor hooks the signed-call pipeline drives.

As Huawei's API gateway does, a request is first matched to an API (``APIGW.0101`` when none
matches), then authenticated with SDK-HMAC-SHA256 (clock window, access key, signature; every
failure is ``APIGW.0301`` with a reason), then its project is checked: the path's project and any
``X-Project-Id`` must be the access key's tenant. A mutating request's replay key is its
signature, remembered for twice the clock window once the call passed the gate (the pipeline's
rule). Failures are the product's error code with a 4xx/5xx status; nothing a client sends
produces a 5xx. JSON bodies are parsed by the handlers, after all of the above.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from keyturn.core.errors import DomainError, SignatureExpired, TenantMismatch, UnknownAction
from keyturn.dialects._wire import WireRequest, WireResponse
from keyturn.dialects.actions import ProductHooks, bound
from keyturn.dialects.huawei.envelope import (
    InvalidProjectId,
    new_request_id,
    render,
    render_error,
)
from keyturn.dialects.huawei.errors import ERRORS, HuaweiCode, huawei_message
from keyturn.dialects.huawei.product import Call, HuaweiProduct, Route
from keyturn.dialects.huawei.signing import (
    HuaweiAuthorization,
    parse_authorization,
    parse_sdk_date,
    verify,
)
from keyturn.dialects.pipeline import Bound, ReplayKey, SignedCallPipeline
from keyturn.service.context import Caller
from keyturn.service.facade import Services
from keyturn.service.gate import CallInfo

#: How far ``X-Sdk-Date`` may be from the server clock (Huawei's gateway allows 15 minutes).
CLOCK_WINDOW_SECONDS = 15 * 60
#: Methods whose requests change something, so a replay of one is refused.
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Huawei project ids are 32 hex digits; keyturn tenants may be any of these characters.
_PROJECT_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class HuaweiEnvelope:
    """The request's parsed ``Authorization`` and ``X-Sdk-Date``."""

    auth: HuaweiAuthorization
    sdk_date: datetime


@dataclass(frozen=True, slots=True)
class HuaweiRoute:
    product: HuaweiProduct
    route: Route
    path_params: Mapping[str, str]

    @property
    def codes(self) -> Mapping[type[DomainError], HuaweiCode]:
        return self.product.codes

    @property
    def neutral(self) -> str:
        return self.route.neutral


class HuaweiHooks(ProductHooks[HuaweiRoute, HuaweiCode]):
    """Huawei's signatures, routes and answers, under ``/v2/{project_id}/...``."""

    name = "huawei"
    errors = ERRORS
    respond = staticmethod(render)
    replay_message = "this signed request was already received (a replay); sign it again"

    def __init__(self, products: Sequence[HuaweiProduct]) -> None:
        self._routes = [(product, route) for product in products for route in product.routes]

    def claims(self, request: WireRequest) -> bool:
        return request.header("authorization").startswith("SDK-HMAC-") or request.path.startswith(
            "/v2/"
        )

    def new_request_id(self) -> str:
        return new_request_id()

    def envelope(self, request: WireRequest) -> HuaweiEnvelope:
        auth = parse_authorization(request.header("authorization"))
        return HuaweiEnvelope(auth=auth, sdk_date=parse_sdk_date(request.header("x-sdk-date")))

    def claimed_key(self, request: WireRequest, envelope: HuaweiEnvelope | None) -> str:
        if envelope is not None:
            return envelope.auth.access_key
        return parse_authorization(request.header("authorization")).access_key

    def check_clock(self, envelope: HuaweiEnvelope, now: datetime) -> None:
        if abs((now - envelope.sdk_date).total_seconds()) > CLOCK_WINDOW_SECONDS:
            raise SignatureExpired(
                f"X-Sdk-Date is more than {CLOCK_WINDOW_SECONDS // 60} minutes from the server time"
            )

    def key_id(self, envelope: HuaweiEnvelope) -> str:
        return envelope.auth.access_key

    def verify(self, envelope: HuaweiEnvelope, request: WireRequest, secret: str) -> None:
        verify(auth=envelope.auth, secret_key=secret, request=request, sdk_date=envelope.sdk_date)

    def early_route(self, request: WireRequest) -> HuaweiRoute:
        return self.route(None, request)

    def route(self, envelope: HuaweiEnvelope | None, request: WireRequest) -> HuaweiRoute:
        path_known = False
        for product, route in self._routes:
            params = route.match(request.path)
            if params is None:
                continue
            if route.method == request.method:
                return HuaweiRoute(product=product, route=route, path_params=params)
            path_known = True
        if path_known:
            raise UnknownAction("The API does not exist.")
        raise UnknownAction("The API does not exist or has not been published in the environment.")

    def bind(
        self, route: HuaweiRoute, envelope: HuaweiEnvelope, request: WireRequest, caller: Caller
    ) -> Bound:
        project = request.header("x-project-id")
        if project and project != caller.tenant_id:
            raise TenantMismatch("Project ID does not match the token.")
        project_id = route.path_params["project_id"]
        if not _PROJECT_ID.match(project_id):
            raise InvalidProjectId("Invalid project ID format.")
        if project_id != caller.tenant_id:
            raise TenantMismatch("Project ID does not match the token.")
        info = CallInfo(
            vendor=self.name,
            action=route.route.action,
            neutral_action=route.route.neutral,
            mutating=route.route.method != "GET",
            resource_name=route.product.resource_name,
            instance_id=route.path_params.get("instance_id"),
        )
        return bound(info, route.route.handler, Call(params=route.path_params, request=request))

    def replay_key(
        self, envelope: HuaweiEnvelope, request: WireRequest, mutating: bool
    ) -> ReplayKey | None:
        # X-Sdk-Date has a one-second resolution: an identical request signed again within
        # the same second is indistinguishable from a replay, and is refused as one.
        if request.method not in MUTATING:
            return None
        return ReplayKey(envelope.auth.signature, 2 * CLOCK_WINDOW_SECONDS)

    def audit_action(
        self, route: HuaweiRoute | None, envelope: HuaweiEnvelope | None, request: WireRequest
    ) -> str:
        if route is not None:
            return route.route.action
        return f"{request.method} {request.path[:200]}"

    def respond_error(
        self, error: DomainError, entry: HuaweiCode, request_id: str, request: WireRequest
    ) -> WireResponse:
        return render_error(entry.code, entry.status, huawei_message(error), request_id)


def HuaweiDialect(
    services: Services, products: Sequence[HuaweiProduct], served_hosts: Sequence[str] = ()
) -> SignedCallPipeline[HuaweiEnvelope, HuaweiRoute]:
    """The Huawei dialect: ``HuaweiHooks`` on the signed-call pipeline."""
    return SignedCallPipeline(HuaweiHooks(products), services, served_hosts)
