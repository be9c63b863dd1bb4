"""Domain error -> Tencent error code, in one table per product on top of a common one.

Tencent answers every error with HTTP 200 and ``{"Response": {"Error": {...}}}``; only the code
differs. Look-up walks the exception's class hierarchy, so a specific domain error falls back to
its parent's code when a table does not name it.
"""

from __future__ import annotations

from collections.abc import Mapping

from keyturn.core import errors as e

COMMON_CODES: Mapping[type[e.DomainError], str] = {
    e.RequestError: "InvalidParameter",
    e.MalformedRequest: "InvalidParameter",
    e.RequestTooLarge: "RequestSizeLimitExceeded",
    e.UnknownAction: "InvalidAction",
    e.UnsupportedVersion: "NoSuchVersion",
    e.MissingParameter: "MissingParameter",
    e.InvalidParameter: "InvalidParameter",
    e.InvalidParameterValue: "InvalidParameterValue",
    e.UnsupportedFeature: "UnsupportedOperation",
    e.AuthError: "AuthFailure",
    e.AccessDenied: "AuthFailure.UnauthorizedOperation",
    e.RequestThrottled: "RequestLimitExceeded",
    e.MissingAuthorization: "AuthFailure.InvalidAuthorization",
    e.UnknownAccessKey: "AuthFailure.SecretIdNotFound",
    e.SignatureInvalid: "AuthFailure.SignatureFailure",
    e.SignatureExpired: "AuthFailure.SignatureExpire",
    e.NonceReused: "AuthFailure.SignatureFailure",
    e.HostNotServed: "AuthFailure.SignatureFailure",
    e.NotFound: "ResourceNotFound",
    e.Conflict: "ResourceInUse",
    e.EngineError: "FailedOperation",
    e.EngineUnavailable: "ResourceUnavailable",
    e.InternalError: "InternalError",
    e.DomainError: "InternalError",
}


def tencent_code(
    error: e.DomainError, overrides: Mapping[type[e.DomainError], str] | None = None
) -> str:
    """The Tencent code for ``error``: the product's table first (it is authoritative for its
    errors, parents included), then the common table, most specific class first."""
    for table in (overrides or {}, COMMON_CODES):
        for cls in type(error).__mro__:
            if cls in table:
                return table[cls]
    return "InternalError"
