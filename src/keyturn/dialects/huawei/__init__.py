"""The Huawei Cloud REST dialect: route by method and path, authenticate, answer.

As Huawei's API gateway does, a request is first matched to an API (``APIGW.0101`` when none
matches), then authenticated with SDK-HMAC-SHA256 (clock window, access key, signature; every
failure is ``APIGW.0301`` with a reason), then its project is checked: the path's project and any
``X-Project-Id`` must be the access key's tenant. Mutating requests are remembered by signature
for as long as their date is acceptable, so a captured request cannot be replayed. Failures are
the product's error code with a 4xx/5xx status; nothing a client sends produces a 5xx.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import datetime

from keyturn.core.errors import (
    DomainError,
    InternalError,
    NonceReused,
    RequestTooLarge,
    SignatureExpired,
    TenantMismatch,
    UnknownAction,
)
from keyturn.dialects._wire import WireRequest, WireResponse, caller_of
from keyturn.dialects.huawei.envelope import (
    InvalidProjectId,
    new_request_id,
    render,
    render_error,
)
from keyturn.dialects.huawei.errors import huawei_code, huawei_message
from keyturn.dialects.huawei.product import Call, HuaweiProduct, Route
from keyturn.dialects.huawei.signing import parse_authorization, parse_sdk_date, verify
from keyturn.service.context import Caller
from keyturn.service.facade import Services
from keyturn.service.gate import CallInfo

log = logging.getLogger(__name__)

#: How far ``X-Sdk-Date`` may be from the server clock (Huawei's gateway allows 15 minutes).
CLOCK_WINDOW_SECONDS = 15 * 60
#: Methods whose requests change something, so a replay of one is refused.
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Huawei project ids are 32 hex digits; keyturn tenants may be any of these characters.
_PROJECT_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")


class HuaweiDialect:
    """Serve Huawei products under ``/v2/{project_id}/...``."""

    name = "huawei"

    def __init__(self, services: Services, products: Sequence[HuaweiProduct]) -> None:
        self._services = services
        self._routes = [(product, route) for product in products for route in product.routes]

    def claims(self, request: WireRequest) -> bool:
        return request.header("authorization").startswith("SDK-HMAC-") or request.path.startswith(
            "/v2/"
        )

    def too_large(self, request: WireRequest) -> WireResponse:
        error = RequestTooLarge("Request entity too large.")
        code = huawei_code(error)
        return render_error(code.code, code.status, error.message, new_request_id())

    async def handle(self, request: WireRequest) -> WireResponse:
        request_id = new_request_id()
        product: HuaweiProduct | None = None
        route: Route | None = None
        caller: Caller | None = None
        gated = False  # from the gate on, the gate audits the call itself
        try:
            product, route, params = self._route(request)
            caller = await self._authenticate(request, request_id)
            self._check_project(params["project_id"], caller)
            info = CallInfo(
                vendor=self.name,
                action=route.action,
                neutral_action=route.neutral,
                mutating=route.method != "GET",
                resource_name=product.resource_name,
                instance_id=params.get("instance_id"),
            )
            codes = product.codes
            gated = True
            payload = await self._services.gate.run(
                caller,
                info,
                lambda: route.handler(self._services, caller, Call(params=params, request=request)),
                lambda error: huawei_code(error, codes).code,
            )
            return render(payload, request_id)
        except DomainError as error:
            code = huawei_code(error, product.codes if product else None)
            if not gated:
                await self._audit_refusal(request, request_id, route, caller, code.code)
            return render_error(code.code, code.status, huawei_message(error), request_id)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            internal = InternalError("Internal service error.")
            code = huawei_code(internal)
            if not gated:
                await self._audit_refusal(request, request_id, route, caller, code.code)
            return render_error(code.code, code.status, internal.message, request_id)

    async def _audit_refusal(
        self,
        request: WireRequest,
        request_id: str,
        route: Route | None,
        caller: Caller | None,
        code: str,
    ) -> None:
        """Audit a request refused before the gate; unauthenticated, it has no tenant and the
        key is the AK its Authorization header claimed (if it parses)."""
        if caller is None:
            try:
                claimed = parse_authorization(request.header("authorization")).access_key
            except DomainError:
                claimed = ""
            caller = caller_of(request, request_id, key_id=claimed)
        await self._services.gate.rejected(
            caller,
            vendor=self.name,
            action=route.action if route else f"{request.method} {request.path}",
            code=code,
            neutral_action=route.neutral if route else "",
        )

    def _route(self, request: WireRequest) -> tuple[HuaweiProduct, Route, dict[str, str]]:
        path_known = False
        for product, route in self._routes:
            params = route.match(request.path)
            if params is None:
                continue
            if route.method == request.method:
                return product, route, params
            path_known = True
        if path_known:
            raise UnknownAction("The API does not exist.")
        raise UnknownAction("The API does not exist or has not been published in the environment.")

    async def _authenticate(self, request: WireRequest, request_id: str) -> Caller:
        auth = parse_authorization(request.header("authorization"))
        sdk_date = parse_sdk_date(request.header("x-sdk-date"))
        self._check_clock(sdk_date)
        key = await self._services.credentials.access_key(auth.access_key)
        verify(
            auth=auth,
            secret_key=key.secret.reveal(),
            method=request.method,
            path=request.path,
            query=request.query,
            headers=request.headers,
            body=request.body,
            sdk_date=sdk_date,
        )
        if request.method in MUTATING:
            # Only after the signature verified, so forged requests cannot use up signatures.
            # A request stays acceptable for the window on either side of its date.
            # X-Sdk-Date has a one-second resolution: an identical request signed again within
            # the same second is indistinguishable from a replay, and is refused as one.
            try:
                self._services.nonces.remember(key.id, auth.signature, 2 * CLOCK_WINDOW_SECONDS)
            except NonceReused:
                raise NonceReused(
                    "this signed request was already received (a replay); sign it again"
                ) from None
        project = request.header("x-project-id")
        if project and project != key.tenant_id:
            raise TenantMismatch("Project ID does not match the token.")
        return caller_of(request, request_id, key_id=key.id, tenant_id=key.tenant_id)

    def _check_clock(self, sdk_date: datetime) -> None:
        skew = abs((self._services.clock.now() - sdk_date).total_seconds())
        if skew > CLOCK_WINDOW_SECONDS:
            raise SignatureExpired(
                f"X-Sdk-Date is more than {CLOCK_WINDOW_SECONDS // 60} minutes from the server time"
            )

    def _check_project(self, project_id: str, caller: Caller) -> None:
        if not _PROJECT_ID.match(project_id):
            raise InvalidProjectId("Invalid project ID format.")
        if project_id != caller.tenant_id:
            raise TenantMismatch("Project ID does not match the token.")
