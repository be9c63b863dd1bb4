"""Domain error -> Tencent error code, in one table per product on top of a common one.

Tencent answers every error with HTTP 200 and ``{"Response": {"Error": {...}}}``; only the code
differs. Look-up walks the exception's class hierarchy, so a specific domain error falls back to
its parent's code when a product does not name it.
"""

from __future__ import annotations

from collections.abc import Mapping

from keyturn.core import errors as e

COMMON_CODES: Mapping[type[e.DomainError], str] = {
    e.MalformedRequest: "InvalidParameter",
    e.RequestTooLarge: "RequestSizeLimitExceeded",
    e.UnknownAction: "InvalidAction",
    e.UnsupportedVersion: "NoSuchVersion",
    e.MissingParameter: "MissingParameter",
    e.InvalidParameter: "InvalidParameter",
    e.InvalidParameterValue: "InvalidParameterValue",
    e.UnsupportedFeature: "UnsupportedOperation",
    e.AuthError: "AuthFailure",
    e.MissingAuthorization: "AuthFailure.InvalidAuthorization",
    e.UnknownAccessKey: "AuthFailure.SecretIdNotFound",
    e.SignatureInvalid: "AuthFailure.SignatureFailure",
    e.SignatureExpired: "AuthFailure.SignatureExpire",
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
    """The Tencent code for ``error``, preferring the product's own table."""
    for cls in type(error).__mro__:
        if overrides and cls in overrides:
            return overrides[cls]
        if cls in COMMON_CODES:
            return COMMON_CODES[cls]
    return "InternalError"
