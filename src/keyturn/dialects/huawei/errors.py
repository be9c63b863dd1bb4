"""Domain error -> Huawei error code and HTTP status, in one common table plus product tables.

Authentication failures use the API Gateway's codes (``APIGW.*``, as Huawei's gateway answers
before a service sees the request); everything else uses the service's codes (DCS: the
``1114xxxxx`` / ``1115xxxxx`` codes of its error-code page, and ``DCS.4839`` from the reset API's
own example). Look-up walks the exception's class hierarchy, so a specific domain error falls
back to its parent's code when no table names it. Sources:
https://support.huaweicloud.com/intl/en-us/devg-apisign/api-sign-errorcode.html (APIGW) and
https://support.huaweicloud.com/intl/en-us/api-dcs/ErrorCode.html (DCS).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from keyturn.core import errors as e
from keyturn.dialects.actions import ErrorTable
from keyturn.dialects.huawei.envelope import EmptyBody, InvalidProjectId


class HuaweiCode(NamedTuple):
    """An ``error_code`` and the HTTP status it is sent with."""

    code: str
    status: int


#: The gateway's prefix for every IAM authentication failure; the reason follows it.
IAM_PREFIX = "Incorrect IAM authentication information: "

IAM_FAILURE = HuaweiCode("APIGW.0301", 401)
NO_SUCH_API = HuaweiCode("APIGW.0101", 404)
TOO_LARGE = HuaweiCode("APIGW.0201", 413)
INTERNAL = HuaweiCode("111500000", 500)

COMMON_CODES: Mapping[type[e.DomainError], HuaweiCode] = {
    e.AuthError: IAM_FAILURE,
    e.TenantMismatch: HuaweiCode("111401004", 401),
    e.AccessDenied: HuaweiCode("APIGW.0302", 403),
    # The code and status Huawei's gateway sends for "policy user over ratelimit".
    e.RequestThrottled: HuaweiCode("APIG.0308", 429),
    e.UnknownAction: NO_SUCH_API,
    e.UnsupportedVersion: NO_SUCH_API,
    e.RequestTooLarge: TOO_LARGE,
    e.RequestError: HuaweiCode("111400063", 400),
    e.MalformedRequest: HuaweiCode("111400005", 400),
    EmptyBody: HuaweiCode("111400004", 400),
    InvalidProjectId: HuaweiCode("111400002", 400),
    e.UnsupportedFeature: HuaweiCode("111400026", 400),
    e.NotFound: HuaweiCode("111404001", 404),
    e.Conflict: HuaweiCode("111400026", 400),
    e.OperationInProgress: HuaweiCode("111400017", 400),
    e.EngineError: HuaweiCode("111400842", 500),
    e.EngineUnavailable: HuaweiCode("111400026", 400),
    # The store cannot be reached: the service's internal error (as Huawei answers it).
    e.StoreUnavailable: INTERNAL,
}

ERRORS = ErrorTable(COMMON_CODES, INTERNAL, lambda entry: entry.code)

#: The entry for an error: the product's table (its ``codes``) over the common one.
huawei_code = ERRORS.look_up


def huawei_message(error: e.DomainError) -> str:
    """The ``error_msg``: authentication failures read like the gateway's, with the reason."""
    if isinstance(error, e.AuthError) and not isinstance(error, e.TenantMismatch | e.AccessDenied):
        return IAM_PREFIX + error.message
    return error.message
