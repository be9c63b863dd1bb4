"""Domain error -> Alibaba Cloud error (Code, HTTP status, Message), in one table per product
on top of a common one.

Alibaba answers errors with an HTTP 4xx/5xx status and a JSON body whose ``Code`` the SDKs
raise (the Tea SDK: ``ClientException`` below 500, ``ServerException`` from 500; the legacy
SDK: ``ServerException``). Look-up walks the exception's class hierarchy, so a specific domain
error falls back to its parent's entry when a table does not name it. An entry's fixed
``message`` is Alibaba's wording, optionally with the domain error's own message (which never
holds a secret) as ``{detail}``; without one, the domain error's message is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from keyturn.core import errors as e
from keyturn.dialects.actions import ErrorTable


@dataclass(frozen=True, slots=True)
class AlibabaCode:
    """How one kind of error is answered."""

    code: str
    status: int
    #: Alibaba's fixed message, where ``{detail}`` stands for the domain error's own message;
    #: None sends the domain error's own message alone.
    message: str | None = None


INTERNAL = AlibabaCode(
    "InternalError",
    500,
    "The request processing has failed due to some unknown error, exception or failure.",
)

#: The codes every Alibaba product shares (the API gateway's own).
COMMON_CODES: Mapping[type[e.DomainError], AlibabaCode] = {
    e.RequestError: AlibabaCode("InvalidParameter", 400),
    e.MalformedRequest: AlibabaCode("InvalidParameter", 400),
    e.RequestTooLarge: AlibabaCode("RequestEntityTooLarge", 413),
    e.UnknownAction: AlibabaCode(
        "InvalidAction.NotFound",
        404,
        "Specified api is not found, please check your url and method.",
    ),
    e.UnsupportedVersion: AlibabaCode(
        "InvalidVersion", 400, "Specified parameter Version is not valid."
    ),
    e.MissingParameter: AlibabaCode("MissingParameter", 400),
    e.InvalidParameter: AlibabaCode("InvalidParameter", 400),
    e.InvalidParameterValue: AlibabaCode("InvalidParameter", 400),
    e.UnsupportedFeature: AlibabaCode("OperationDenied", 403),
    e.AuthError: AlibabaCode("Forbidden", 403),
    e.AccessDenied: AlibabaCode(
        "Forbidden.RAM", 403, "User not authorized to operate on the specified resource: {detail}"
    ),
    e.RequestThrottled: AlibabaCode(
        "Throttling.User", 400, "Request was denied due to user flow control."
    ),
    e.MissingAuthorization: AlibabaCode("IncompleteSignature", 400),
    e.UnknownAccessKey: AlibabaCode(
        "InvalidAccessKeyId.NotFound", 404, "Specified access key is not found."
    ),
    # The legacy SDK does Message.split(':')[1] on this code (an IndexError without a ':');
    # the string to sign is never echoed, because it holds every parameter, passwords too.
    e.SignatureInvalid: AlibabaCode(
        "SignatureDoesNotMatch",
        400,
        "Specified signature is not matched with our calculation: check your AccessKeySecret "
        "and the signing method.",
    ),
    # Signed for another deployment's host name: the signature cannot be ours.
    e.HostNotServed: AlibabaCode(
        "SignatureDoesNotMatch",
        400,
        "Specified signature is not matched with our calculation: the request was signed for "
        "a host this server does not serve.",
    ),
    e.SignatureExpired: AlibabaCode(
        "InvalidTimeStamp.Expired",
        400,
        "Specified time stamp or date value is expired (more than 15 minutes from the server "
        "time).",
    ),
    e.TimestampMalformed: AlibabaCode(
        "InvalidTimeStamp.Format",
        400,
        "Specified time stamp or date value is not well formatted (use %Y-%m-%dT%H:%M:%SZ).",
    ),
    e.NonceReused: AlibabaCode(
        "SignatureNonceUsed", 400, "Specified signature nonce was used already."
    ),
    e.NotFound: AlibabaCode("ResourceNotFound", 404),
    e.InstanceNotFound: AlibabaCode(
        "InvalidInstanceId.NotFound", 404, "The specified instance does not exist."
    ),
    e.Conflict: AlibabaCode("IncorrectAccountStatus", 403),
    # Engine trouble is neither the client's fault nor a keyturn bug: the instance is not in a
    # state that allows the operation (unreachable node, refused command, failed verification,
    # all rolled back). The message says which node and why, never a credential.
    e.EngineError: AlibabaCode("IncorrectDBInstanceState", 403),
    # The reset goes on as a durable task and will finish: retry-later semantics.
    e.OperationTimedOut: AlibabaCode("ServiceUnavailable", 503),
    # The store cannot be reached: Alibaba's temporary-failure answer (the SDKs may retry).
    e.StoreUnavailable: AlibabaCode(
        "ServiceUnavailable",
        503,
        "The request has failed due to a temporary failure of the server.",
    ),
}

ERRORS = ErrorTable(COMMON_CODES, INTERNAL, lambda entry: entry.code)

#: The entry for an error: the product's table (its ``codes``) over the common one.
alibaba_code = ERRORS.look_up


def message_of(error: e.DomainError, entry: AlibabaCode) -> str:
    if entry.message is None:
        return error.message
    return entry.message.replace("{detail}", error.message)
