"""The Alibaba dialect without I/O: which requests it claims (never Tencent's), the whole error
table (every domain error gets a 4xx code unless it is a server-side fault), and the request
flow against stub services — routing, the default-account alias, replay refusal, error
rendering, and that no password or string to sign ever reaches a response."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from keyturn.core import errors as e
from keyturn.core.errors import TimestampMalformed
from keyturn.core.metrics import NO_METRICS
from keyturn.core.model import AccessKey
from keyturn.core.secrets import Secret
from keyturn.dialects._wire import WireRequest, WireResponse
from keyturn.dialects.alibaba import AlibabaDialect
from keyturn.dialects.alibaba.errors import COMMON_CODES, alibaba_code
from keyturn.dialects.alibaba.kvstore import PRODUCT, account_of
from keyturn.service.accounts import ChangeOutcome, ChangeResult
from tests.support.alibaba_sdk import acs3_request, rpc_query
from tests.support.fakes import PassthroughGate, QueuedTask, WallClock, memory_replay_guard

KEY_ID, SECRET = "LTAIunit0000000001", "unit-secret-0123456789"
INSTANCE = "r-bp1zxszhcgatnx"
PASSWORD = "Kt-Unit-Passw0rd"


class Credentials:
    async def access_key(self, key_id: str) -> AccessKey:
        if key_id != KEY_ID:
            raise e.UnknownAccessKey()
        return AccessKey(id=KEY_ID, tenant_id="1", secret=Secret(SECRET))


class Resets:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.error: e.DomainError | Exception | None = None

    async def reset_password_and_wait(self, caller: Any, **kwargs: Any) -> QueuedTask:
        self.calls.append({"caller": caller, **kwargs})
        if self.error is not None:
            raise self.error
        return QueuedTask()


class Accounts:
    def __init__(self) -> None:
        self.outcome = ChangeOutcome(result=ChangeResult.SUCCESS, retries_left=5)

    async def change_password(self, caller: Any, **kwargs: Any) -> ChangeOutcome:
        return self.outcome


def make_dialect() -> tuple[Any, SimpleNamespace]:
    clock = WallClock()
    services = SimpleNamespace(
        credentials=Credentials(),
        clock=clock,
        replay=memory_replay_guard(clock),
        resets=Resets(),
        accounts=Accounts(),
        gate=PassthroughGate(),
        metrics=NO_METRICS,
    )
    return AlibabaDialect(services, [PRODUCT]), services  # type: ignore[arg-type]


def send(dialect: Any, query: str, headers: dict[str, str]) -> WireResponse:
    request = WireRequest(method="POST", path="/", query=query, headers={"host": "h", **headers})
    response: WireResponse = asyncio.run(dialect.handle(request))
    return response


def answer(response: WireResponse) -> tuple[int, dict[str, Any]]:
    assert response.headers["content-type"] == "application/json;charset=utf-8"
    body: dict[str, Any] = json.loads(response.body)
    return response.status, body


RESET = {"InstanceId": INSTANCE, "AccountName": "appuser", "AccountPassword": PASSWORD}


# ------------------------------------------------------------------ claims


@pytest.mark.parametrize(
    ("query", "headers", "claimed"),
    [
        ("", {"authorization": "ACS3-HMAC-SHA256 Credential=a"}, True),
        ("", {"x-acs-action": "ResetAccountPassword"}, True),
        ("Action=X&AccessKeyId=a&Signature=b", {}, True),
        ("", {"authorization": "TC3-HMAC-SHA256 Credential=AKID/x"}, False),
        ("", {"x-tc-action": "ResetPassword"}, False),
        ("Action=ResetPassword&SecretId=a&Signature=b", {}, False),
        ("", {"content-type": "application/x-www-form-urlencoded"}, False),
        ("XAccessKeyId=a&XSignature=b", {}, False),
        ("", {"authorization": "SDK-HMAC-SHA256 Access=a"}, False),
    ],
)
def test_claims_alibaba_requests_only(query: str, headers: dict[str, str], claimed: bool) -> None:
    dialect, _ = make_dialect()
    request = WireRequest(method="POST", path="/", query=query, headers=headers)
    assert dialect.claims(request) is claimed


def test_claims_only_the_root_path() -> None:
    dialect, _ = make_dialect()
    headers = {"x-acs-action": "ResetAccountPassword"}
    assert not dialect.claims(WireRequest(method="POST", path="/v2/x", query="", headers=headers))


# ------------------------------------------------------------------ the error table


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (e.PasswordLengthViolation(), "InvalidAccountPassword.Format", 400),
        (e.PasswordCharsetViolation(), "InvalidAccountPassword.Format", 400),
        (e.PasswordCompositionViolation(), "InvalidAccountPassword.Format", 400),
        (e.PasswordEmpty(), "InvalidAccountPassword.Format", 400),
        (e.InvalidAccountName(), "InvalidAccountName.Format", 400),
        (e.AccountsUnsupported(), "InvalidEngineVersion.Format", 400),
        (e.OperationInProgress(), "TaskExists", 400),
        (e.AccountExists(), "InvalidAccountName.Duplicate", 400),
        (e.AccountNotFound(), "InvalidAccountName.NotFound", 404),
        (e.InstanceNotFound(), "InvalidInstanceId.NotFound", 404),
        (e.OldPasswordMismatch(), "InvalidAccountPassword.Mismatch", 400),
        (e.PasswordChangeLocked(), "Account.Locked", 403),
        (e.UnknownAccessKey(), "InvalidAccessKeyId.NotFound", 404),
        (e.SignatureInvalid(), "SignatureDoesNotMatch", 400),
        (e.SignatureExpired(), "InvalidTimeStamp.Expired", 400),
        (TimestampMalformed(), "InvalidTimeStamp.Format", 400),
        (e.NonceReused(), "SignatureNonceUsed", 400),
        (e.MissingAuthorization(), "IncompleteSignature", 400),
        (e.UnknownAction(), "InvalidAction.NotFound", 404),
        (e.UnsupportedVersion(), "InvalidVersion", 400),
        (e.MissingParameter(), "MissingParameter", 400),
        (e.InvalidParameter(), "InvalidParameter", 400),
        (e.MalformedRequest(), "InvalidParameter", 400),
        (e.RequestTooLarge(), "RequestEntityTooLarge", 413),
        (e.EngineUnavailable(), "IncorrectDBInstanceState", 403),
        (e.EngineRejected(), "IncorrectDBInstanceState", 403),
        (e.VerificationFailed(), "IncorrectDBInstanceState", 403),
        (e.OperationTimedOut(), "ServiceUnavailable", 503),
        (e.InternalError(), "InternalError", 500),
    ],
)
def test_error_table(error: e.DomainError, code: str, status: int) -> None:
    entry = alibaba_code(error, PRODUCT.codes)
    assert (entry.code, entry.status) == (code, status)


def domain_errors() -> list[type[e.DomainError]]:
    found = [
        cls for _, cls in inspect.getmembers(e, inspect.isclass) if issubclass(cls, e.DomainError)
    ]
    return [*found, TimestampMalformed]


def test_only_server_faults_are_5xx() -> None:
    server_side = (e.InternalError, e.OperationTimedOut)
    for cls in domain_errors():
        if cls is e.DomainError:
            continue
        status = alibaba_code(cls(), PRODUCT.codes).status
        if issubclass(cls, server_side):
            assert status >= 500, cls
        else:
            assert 400 <= status < 500, (cls, status)


def test_every_common_code_has_a_documented_shape() -> None:
    for entry in COMMON_CODES.values():
        assert entry.code and 400 <= entry.status < 600


def test_account_names() -> None:
    assert account_of(INSTANCE, INSTANCE) == "default"
    assert account_of("app_user_1", INSTANCE) == "app_user_1"
    for bad in ("App", "1app", "_app", "app-user", "a" * 101, "app\n", "", "é"):
        with pytest.raises(e.InvalidAccountName):
            account_of(bad, INSTANCE)
    assert account_of("a" * 100, INSTANCE) == "a" * 100


# ------------------------------------------------------------------ the request flow


def test_reset_routes_to_the_service_with_the_default_alias() -> None:
    dialect, services = make_dialect()
    query, headers = acs3_request(
        "h",
        "ResetAccountPassword",
        {**RESET, "AccountName": INSTANCE},
        key_id=KEY_ID,
        secret=SECRET,
    )
    status, body = answer(send(dialect, query, headers))
    assert status == 200 and set(body) == {"RequestId"}
    [call] = services.resets.calls
    assert call["account"] == "default" and call["instance_id"] == INSTANCE
    assert call["password"] == Secret(PASSWORD) and call["policy"].name == "alibaba-kvstore"
    assert call["caller"].tenant_id == "1" and call["caller"].request_id == body["RequestId"]


def test_rpc_requests_route_too_and_replays_are_refused() -> None:
    dialect, services = make_dialect()
    query = rpc_query("ResetAccountPassword", RESET, key_id=KEY_ID, secret=SECRET)
    assert answer(send(dialect, query, {}))[0] == 200
    status, body = answer(send(dialect, query, {}))
    assert (status, body["Code"]) == (400, "SignatureNonceUsed")
    assert len(services.resets.calls) == 1


def test_a_forged_request_does_not_use_up_its_nonce() -> None:
    dialect, _ = make_dialect()
    forged = rpc_query("ResetAccountPassword", RESET, key_id=KEY_ID, secret="x", nonce="n1")
    assert answer(send(dialect, forged, {}))[1]["Code"] == "SignatureDoesNotMatch"
    real = rpc_query("ResetAccountPassword", RESET, key_id=KEY_ID, secret=SECRET, nonce="n1")
    assert answer(send(dialect, real, {}))[0] == 200


def test_signature_errors_never_echo_the_string_to_sign() -> None:
    dialect, _ = make_dialect()
    query = rpc_query("ResetAccountPassword", RESET, key_id=KEY_ID, secret="wrong")
    response = send(dialect, query, {})
    status, body = answer(response)
    assert (status, body["Code"]) == (400, "SignatureDoesNotMatch")
    assert ":" in body["Message"]  # the legacy SDK splits it on ':'
    assert PASSWORD.encode() not in response.body and b"%26" not in response.body
    assert body["HostId"] == "h" and body["Recommend"].endswith("SignatureDoesNotMatch")


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (
            e.PasswordCompositionViolation("password must contain ..."),
            "InvalidAccountPassword.Format",
            400,
        ),
        (e.AccountsUnsupported(), "InvalidEngineVersion.Format", 400),
        (e.OperationInProgress(), "TaskExists", 400),
        (e.EngineUnavailable("node 127.0.0.1:1: refused"), "IncorrectDBInstanceState", 403),
        (e.OperationTimedOut("the reset goes on as task 3"), "ServiceUnavailable", 503),
    ],
)
def test_service_errors_are_rendered_with_the_product_codes(
    error: e.DomainError, code: str, status: int
) -> None:
    dialect, services = make_dialect()
    services.resets.error = error
    query, headers = acs3_request("h", "ResetAccountPassword", RESET, key_id=KEY_ID, secret=SECRET)
    got_status, body = answer(send(dialect, query, headers))
    assert (got_status, body["Code"]) == (status, code)
    assert PASSWORD not in body["Message"]


def test_change_outcomes_become_errors() -> None:
    dialect, services = make_dialect()
    change = {
        "InstanceId": INSTANCE,
        "AccountName": "appuser",
        "OldAccountPassword": "Kt-Old-Passw0rd",
        "NewAccountPassword": PASSWORD,
    }
    for result, code, status in [
        (ChangeResult.SUCCESS, None, 200),
        (ChangeResult.PASSWORD_FAILED, "InvalidAccountPassword.Mismatch", 400),
        (ChangeResult.LOCKED, "Account.Locked", 403),
    ]:
        services.accounts.outcome = ChangeOutcome(
            result=result, retries_left=3, lock_minutes=5, lock_minutes_left=4
        )
        query = rpc_query("ModifyAccountPassword", change, key_id=KEY_ID, secret=SECRET)
        got_status, body = answer(send(dialect, query, {}))
        assert (got_status, body.get("Code")) == (status, code)


def test_routing_errors() -> None:
    dialect, _ = make_dialect()
    for action, version, code, status in [
        ("NoSuchAction", "2015-01-01", "InvalidAction.NotFound", 404),
        ("ResetAccountPassword", "2099-01-01", "InvalidVersion", 400),
    ]:
        query = rpc_query(action, RESET, key_id=KEY_ID, secret=SECRET, version=version)
        got_status, body = answer(send(dialect, query, {}))
        assert (got_status, body["Code"]) == (status, code)


def test_unknown_keys_and_stale_requests() -> None:
    dialect, _ = make_dialect()
    query = rpc_query("ResetAccountPassword", RESET, key_id="LTAInobody", secret=SECRET)
    assert answer(send(dialect, query, {}))[0] == 404
    query, headers = acs3_request(
        "h",
        "ResetAccountPassword",
        RESET,
        key_id=KEY_ID,
        secret=SECRET,
        date="2020-01-01T00:00:00Z",
    )
    status, body = answer(send(dialect, query, headers))
    assert (status, body["Code"]) == (400, "InvalidTimeStamp.Expired")


def test_unhandled_exceptions_are_logged_and_rendered_as_internal_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dialect, services = make_dialect()
    services.resets.error = RuntimeError("boom")
    query = rpc_query("ResetAccountPassword", RESET, key_id=KEY_ID, secret=SECRET)
    with caplog.at_level(logging.ERROR):
        status, body = answer(send(dialect, query, {}))
    assert (status, body["Code"]) == (500, "InternalError")
    assert "unhandled error" in caplog.text
    assert PASSWORD not in caplog.text


def test_too_large() -> None:
    dialect, _ = make_dialect()
    request = WireRequest(method="POST", path="/", query="", headers={"host": "h"})
    status, body = answer(dialect.too_large(request))
    assert (status, body["Code"]) == (413, "RequestEntityTooLarge")
