"""Unit tests of the RFC 9457 problem mapping: each branch of the domain error tree gets its
HTTP status, every problem has the members the document's ``Problem`` schema requires, and the
title is the error class's own (the same for every occurrence)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from keyturn.api.problems import MethodNotAllowed, problem, problem_bytes, status_of
from keyturn.api.schemas import COMPONENTS
from keyturn.core import errors as e


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (e.MalformedRequest(), 400),
        (e.InvalidParameter(), 400),
        (e.PasswordLengthViolation(), 400),
        (e.RequestTooLarge(), 413),
        (e.UnknownAction(), 404),
        (MethodNotAllowed(), 405),
        (e.MissingAuthorization(), 401),
        (e.AccessDenied(), 403),
        (e.NotFound(), 404),
        (e.InstanceNotFound(), 404),
        (e.TaskNotFound(), 404),
        (e.Conflict(), 409),
        (e.OperationInProgress(), 409),
        (e.RequestThrottled(), 429),
        (e.EngineUnavailable(), 503),
        (e.EngineRejected(), 502),
        (e.OperationTimedOut(), 504),
        (e.StoreUnavailable(), 503),
        (e.InternalError(), 500),
        (e.DomainError(), 500),
    ],
)
def test_status_by_branch(error: e.DomainError, status: int) -> None:
    assert status_of(error) == status


def test_a_problem_has_the_documented_shape() -> None:
    status, body = problem(e.InstanceNotFound("gone"), "req-1")
    assert status == 404
    assert body == {
        "type": "urn:keyturn:problem:InstanceNotFound",
        "title": "The instance does not exist.",
        "status": 404,
        "detail": "gone",
        "code": "InstanceNotFound",
        "request_id": "req-1",
    }
    jsonschema.validate(body, COMPONENTS["Problem"])
    _, raw = problem_bytes(e.InvalidParameter("caf\u00e9"), "r")
    assert raw.isascii() and json.loads(raw)["detail"] == "caf\u00e9"
