"""RFC 9457 problem documents for the admin API, from the domain error tree.

Every error answer is ``application/problem+json`` with ``type`` (``urn:keyturn:problem:`` + the
error's stable code), ``title`` (the error class's own description, the same for every
occurrence), ``status``, ``detail`` (this occurrence's message, which never holds a secret),
``code`` (the domain error's ``code``) and ``request_id``. The HTTP status follows the branch of
the tree: request errors 400 (413 for a body too large), authentication 401, policy or scope
refusals 403, not found 404, conflicts 409, throttling 429, engines 502/503, the store 503,
keyturn's own faults 500.
"""

from __future__ import annotations

import json
from typing import Any

from keyturn.core.errors import (
    AccessDenied,
    AuthError,
    Conflict,
    DomainError,
    EngineError,
    EngineUnavailable,
    NotFound,
    OperationTimedOut,
    RequestError,
    RequestThrottled,
    RequestTooLarge,
    StoreUnavailable,
    UnknownAction,
)

PROBLEM_TYPE = "urn:keyturn:problem:"
MEDIA_TYPE = "application/problem+json"

#: Most specific first: the first class an error is an instance of decides its status.
_STATUS: tuple[tuple[type[DomainError], int], ...] = (
    (RequestTooLarge, 413),
    (UnknownAction, 404),
    (RequestError, 400),
    (AccessDenied, 403),
    (AuthError, 401),
    (NotFound, 404),
    (Conflict, 409),
    (RequestThrottled, 429),
    (EngineUnavailable, 503),
    (OperationTimedOut, 504),
    (EngineError, 502),
    (StoreUnavailable, 503),
)


class MethodNotAllowed(UnknownAction):
    """The resource does not answer this HTTP method."""

    code = "MethodNotAllowed"


def status_of(error: DomainError) -> int:
    if isinstance(error, MethodNotAllowed):
        return 405
    return next((status for cls, status in _STATUS if isinstance(error, cls)), 500)


def title_of(error: DomainError) -> str:
    doc = (type(error).__doc__ or error.code).strip()
    return doc.splitlines()[0]


def problem(error: DomainError, request_id: str) -> tuple[int, dict[str, Any]]:
    status = status_of(error)
    body = {
        "type": PROBLEM_TYPE + error.code,
        "title": title_of(error),
        "status": status,
        "detail": error.message,
        "code": error.code,
        "request_id": request_id,
    }
    return status, body


def problem_bytes(error: DomainError, request_id: str) -> tuple[int, bytes]:
    status, body = problem(error, request_id)
    return status, json.dumps(body, ensure_ascii=True).encode()
