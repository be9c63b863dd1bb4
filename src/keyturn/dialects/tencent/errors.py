"""Domain error -> Tencent error code, in one table per product on top of a common one.

Tencent answers every error with HTTP 200 and ``{"Response": {"Error": {...}}}``; only the code
differs. Look-up walks the exception's class hierarchy, so a specific domain error falls back to
its parent's code when a table does not name it.
"""

from __future__ import annotations

from collections.abc import Mapping

from keyturn.core import errors as e
from keyturn.dialects.actions import ErrorTable

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
    # Tencent's common code for "the service is temporarily unavailable": the store is down.
    e.StoreUnavailable: "ServiceUnavailable",
}

ERRORS = ErrorTable(COMMON_CODES, "InternalError", str)

#: The Tencent code for an error: the product's table (its ``codes``) over the common one.
tencent_code = ERRORS.look_up
