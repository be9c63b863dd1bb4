"""The Huawei dialect without I/O: routing, authentication order and messages, project checks,
the DCS handlers' parameter handling and the error table, against fake services."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pytest

from keyturn.core import errors as e
from keyturn.core.model import Product
from keyturn.core.passwords import HUAWEI_DCS
from keyturn.core.secrets import Secret
from keyturn.dialects._wire import Dialect, WireRequest, WireResponse
from keyturn.dialects.huawei import HuaweiDialect
from keyturn.dialects.huawei.dcs import PRODUCT
from keyturn.dialects.huawei.errors import huawei_code
from keyturn.service.accounts import ChangeOutcome, ChangeResult
from tests.support.huawei_calls import (
    INSTANCE_ID,
    NOW,
    PROJECT,
    FakeServices,
    request,
    reset_path,
)


@pytest.fixture
def services() -> FakeServices:
    return FakeServices()


@pytest.fixture
def dialect(services: FakeServices) -> Dialect:
    return HuaweiDialect(services, [PRODUCT])  # type: ignore[arg-type]


async def answer(dialect: Dialect, wire: WireRequest) -> tuple[int, dict[str, Any]]:
    response: WireResponse = await dialect.handle(wire)
    assert len(response.headers["x-request-id"]) == 32
    assert response.headers["content-type"] == "application/json"
    return response.status, json.loads(response.body)


def test_claims(dialect: Dialect) -> None:
    assert dialect.claims(WireRequest(method="GET", path="/v2/x", query="", headers={}))
    signed = {"authorization": "SDK-HMAC-SHA256 Access=x"}
    assert dialect.claims(WireRequest(method="POST", path="/", query="", headers=signed))
    tencent = {"authorization": "TC3-HMAC-SHA256 Credential=x"}
    assert not dialect.claims(WireRequest(method="POST", path="/", query="", headers=tencent))


async def test_reset_calls_the_synchronous_reset(dialect: Dialect, services: FakeServices) -> None:
    body = b'{"new_password": "Passw0rd!2024", "no_password_access": false}'
    status, payload = await answer(dialect, request("POST", reset_path(), body))
    assert status == 200
    assert payload == {
        "lock_time": "0",
        "lock_time_left": "0",
        "retry_times_left": "5",
        "code": "1",
        "message": "success",
        "ext_message": None,
    }
    [(name, kwargs)] = services.calls
    assert name == "reset" and kwargs["password"] == Secret("Passw0rd!2024")
    assert kwargs["account"] == "default" and kwargs["differ_from_current"] is True
    assert kwargs["policy"] is HUAWEI_DCS and kwargs["product"] is Product.HUAWEI_DCS


async def test_password_free_reset(dialect: Dialect, services: FakeServices) -> None:
    body = b'{"no_password_access": true, "new_password": "ignored"}'
    status, _ = await answer(dialect, request("POST", reset_path(), body))
    assert status == 200 and services.calls[0][1]["password"] is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "111400004"),
        (b"  ", "111400004"),
        (b"{", "111400005"),
        (b"null", "111400005"),
        (b"\xff", "111400005"),
        (b"{}", "111400063"),
        (b'{"new_password": ""}', "111400063"),
        (b'{"new_password": null, "no_password_access": false}', "111400063"),
        (b'{"new_password": 1}', "111400063"),
        (b'{"no_password_access": 1}', "111400063"),
    ],
)
async def test_reset_body_errors(
    dialect: Dialect, services: FakeServices, body: bytes, code: str
) -> None:
    status, payload = await answer(dialect, request("POST", reset_path(), body))
    assert (status, payload["error_code"]) == (400, code)
    assert payload["error_ext_msg"] is None and payload["error_msg"]
    assert services.calls == []


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (e.PasswordLengthViolation("password must be 8-64 characters long"), "111400019", 400),
        (e.PasswordReused(), "111400019", 400),
        (e.PasswordFreeDenied(), "DCS.4839", 400),
        (e.InstanceNotFound(), "111404022", 404),
        (e.OperationInProgress(), "111400115", 400),
        (e.OperationTimedOut("goes on as task 3"), "111400115", 400),
        (e.EngineUnavailable("node down"), "111400026", 400),
        (e.VerificationFailed("rolled back"), "111400842", 500),
        (e.AccountsUnsupported(), "111400026", 400),
        (e.InternalError(), "111500000", 500),
    ],
)
async def test_service_errors(
    dialect: Dialect, services: FakeServices, error: e.DomainError, code: str, status: int
) -> None:
    services.error = error
    body = b'{"new_password": "Passw0rd!2024"}'
    got_status, payload = await answer(dialect, request("POST", reset_path(), body))
    assert (got_status, payload["error_code"], payload["error_msg"]) == (
        status,
        code,
        error.message,
    )


async def test_unexpected_exceptions_are_logged_500s(
    dialect: Dialect, services: FakeServices, caplog: pytest.LogCaptureFixture
) -> None:
    services.error = RuntimeError("boom")
    with caplog.at_level(logging.ERROR):
        status, payload = await answer(
            dialect, request("POST", reset_path(), b'{"new_password": "Passw0rd!2024"}')
        )
    assert (status, payload["error_code"]) == (500, "111500000")
    assert "boom" not in payload["error_msg"]
    assert "unhandled error" in caplog.text


async def test_routing_comes_first(dialect: Dialect) -> None:
    unsigned = WireRequest(method="GET", path="/v2/p/nothing", query="", headers={})
    status, payload = await answer(dialect, unsigned)
    assert (status, payload["error_code"]) == (404, "APIGW.0101")
    assert "published" in payload["error_msg"]
    wrong_method = WireRequest(method="DELETE", path=reset_path(), query="", headers={})
    status, payload = await answer(dialect, wrong_method)
    assert (status, payload["error_code"], payload["error_msg"]) == (
        404,
        "APIGW.0101",
        "The API does not exist.",
    )


async def test_authentication_failures_say_why(dialect: Dialect, services: FakeServices) -> None:
    path = f"/v2/{PROJECT}/instances/{INSTANCE_ID}"
    cases = {
        "missing": request("GET", path, authorization=""),
        "algorithm": request("GET", path, authorization="SDK-HMAC-SM3 Access=x"),
        "signature": request("GET", path, secret="wrong"),
        "key": request("GET", path, ak="HWAKNOBODY"),
        "expired": request("GET", path, date=NOW - timedelta(minutes=16)),
        "future": request("GET", path, date=NOW + timedelta(minutes=16)),
    }
    messages = set()
    for name, wire in cases.items():
        status, payload = await answer(dialect, wire)
        assert (status, payload["error_code"]) == (401, "APIGW.0301"), name
        assert payload["error_msg"].startswith("Incorrect IAM authentication information: ")
        messages.add(payload["error_msg"])
    assert len(messages) == len(cases) - 1  # expired and future share their message
    within = request("GET", path, date=NOW - timedelta(minutes=14))
    assert (await answer(dialect, within))[0] == 200


async def test_projects(dialect: Dialect) -> None:
    other = "f" * 32
    body = b'{"no_password_access": true}'
    for wire in (
        request("POST", reset_path(project=other), body),
        request("POST", reset_path(), body, project=other),
    ):
        status, payload = await answer(dialect, wire)
        assert (status, payload["error_code"]) == (401, "111401004")
    status, payload = await answer(dialect, request("POST", reset_path(project="p*q"), body))
    assert (status, payload["error_code"]) == (400, "111400002")
    # X-Project-Id is optional: the path's project is what counts.
    status, _ = await answer(dialect, request("POST", reset_path(), body, project=None))
    assert status == 200


async def test_instance_ids(dialect: Dialect) -> None:
    body = b'{"no_password_access": true}'
    for bad in ("not-a-uuid", INSTANCE_ID.upper(), INSTANCE_ID + "0"):
        status, payload = await answer(dialect, request("POST", reset_path(instance_id=bad), body))
        assert (status, payload["error_code"]) == (400, "111400061")
    unknown = "00000000-0000-0000-0000-000000000000"
    status, payload = await answer(dialect, request("GET", f"/v2/{PROJECT}/instances/{unknown}"))
    assert (status, payload["error_code"]) == (404, "111404022")


async def test_replays_of_mutating_requests_are_refused(dialect: Dialect) -> None:
    wire = request("POST", reset_path(), b'{"no_password_access": true}')
    assert (await answer(dialect, wire))[0] == 200
    status, payload = await answer(dialect, wire)
    assert (status, payload["error_code"]) == (401, "APIGW.0301")
    assert "replay" in payload["error_msg"]
    read = request("GET", f"/v2/{PROJECT}/instances/{INSTANCE_ID}")
    assert (await answer(dialect, read))[0] == 200
    assert (await answer(dialect, read))[0] == 200


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (
            ChangeOutcome(result=ChangeResult.SUCCESS, retries_left=5),
            ("success", "5", "0", "0"),
        ),
        (
            ChangeOutcome(result=ChangeResult.PASSWORD_FAILED, retries_left=3),
            ("passwordFailed", "3", "0", "0"),
        ),
        (
            ChangeOutcome(
                result=ChangeResult.LOCKED, retries_left=0, lock_minutes=5, lock_minutes_left=4
            ),
            ("locked", "0", "5", "4"),
        ),
    ],
)
async def test_update_password(
    dialect: Dialect,
    services: FakeServices,
    outcome: ChangeOutcome,
    expected: tuple[str, ...],
) -> None:
    services.outcome = outcome
    body = b'{"old_password": "Old-Passw0rd", "new_password": "New-Passw0rd"}'
    path = f"/v2/{PROJECT}/instances/{INSTANCE_ID}/password"
    status, payload = await answer(dialect, request("PUT", path, body))
    assert status == 200
    got = (
        payload["result"],
        payload["retry_times_left"],
        payload["lock_time"],
        payload["lock_time_left"],
    )
    assert got == expected and payload["message"]
    kwargs = services.calls[0][1]
    assert (kwargs["old"], kwargs["new"]) == (Secret("Old-Passw0rd"), Secret("New-Passw0rd"))
    assert kwargs["differ_from_current"] is True


async def test_reads(dialect: Dialect, services: FakeServices) -> None:
    status, shown = await answer(dialect, request("GET", f"/v2/{PROJECT}/instances/{INSTANCE_ID}"))
    assert status == 200
    assert (shown["instance_id"], shown["port"], shown["no_password_access"]) == (
        INSTANCE_ID,
        6379,
        "false",
    )
    assert shown["created_at"] == "2026-11-22T11:14:45.000Z" and shown["enable_ssl"] is False
    assert "admin-password" not in json.dumps(shown)

    status, listed = await answer(
        dialect, request("GET", f"/v2/{PROJECT}/instances", query="limit=5&offset=2")
    )
    assert status == 200 and listed["instance_num"] == 1
    assert services.calls[-1][1]["page"].limit == 5 and services.calls[-1][1]["page"].offset == 2
    status, listed = await answer(
        dialect, request("GET", f"/v2/{PROJECT}/instances", query="name=rde")
    )
    assert listed["instance_num"] == 1
    status, listed = await answer(
        dialect, request("GET", f"/v2/{PROJECT}/instances", query="name=orders&name_equal=true")
    )
    assert listed["instance_num"] == 1
    status, listed = await answer(
        dialect, request("GET", f"/v2/{PROJECT}/instances", query="ip=10.0.0.1")
    )
    assert listed == {"instance_num": 0, "instances": []}
    for query in ("limit=0", "limit=1001", "offset=-1", "limit=x", "limit=1&limit=2"):
        status, payload = await answer(
            dialect, request("GET", f"/v2/{PROJECT}/instances", query=query)
        )
        assert (status, payload["error_code"]) == (400, "111400063"), query

    status, job = await answer(dialect, request("GET", f"/v2/{PROJECT}/jobs/7"))
    assert job == {
        "job_id": "7",
        "job_type": "resetPassword",
        "status": "FAILED",
        "begin_time": "2026-11-22T11:14:45.000Z",
        "end_time": "2026-11-22T11:14:46.250Z",
        "fail_reason": "node 127.0.0.1:6379 refused the login",
    }
    for job_id in ("8", "abc", "1" * 30, "٣"):
        status, payload = await answer(dialect, request("GET", f"/v2/{PROJECT}/jobs/{job_id}"))
        assert (status, payload["error_code"]) == (404, "111404001"), job_id


def test_too_large(dialect: Dialect) -> None:
    response = dialect.too_large(WireRequest(method="POST", path="/v2/x", query="", headers={}))
    assert response.status == 413 and response.headers["x-request-id"]
    assert json.loads(response.body)["error_code"] == "APIGW.0201"


def all_domain_errors() -> list[type[e.DomainError]]:
    found = [e.DomainError]
    for cls in found:
        found.extend(cls.__subclasses__())
    return [cls for cls in found if cls.__module__ == e.__name__]


def test_every_domain_error_has_a_code() -> None:
    client_errors = (e.RequestError, e.AuthError, e.NotFound, e.Conflict, e.EngineUnavailable)
    for cls in all_domain_errors():
        code = huawei_code(cls(), PRODUCT.codes)
        assert code.code and 400 <= code.status < 600, cls
        if issubclass(cls, client_errors) and not issubclass(cls, e.OperationTimedOut):
            assert code.status < 500, cls
    assert huawei_code(e.DomainError()).status == 500
