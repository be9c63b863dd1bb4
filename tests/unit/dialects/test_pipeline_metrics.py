"""What the signed-call pipeline records without I/O (Huawei's hooks over fake services): each
call counted once with its vendor, action and code, the action only once routed (``unknown``
otherwise, never the client's path or string); rate-limit and replay refusals; and the request
context log records are tagged with while the call runs."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from keyturn.core import errors as e
from keyturn.core.logcontext import CURRENT_REQUEST, RequestContext
from keyturn.dialects._wire import WireRequest
from keyturn.dialects.huawei import HuaweiDialect
from keyturn.dialects.huawei.dcs import MODIFY_AUTH, PRODUCT
from tests.support.fakes import QueuedTask, RecordingMetrics
from tests.support.huawei_calls import PROJECT, FakeServices, request, reset_path

BODY = b'{"no_password_access": true}'


@pytest.fixture
def services() -> FakeServices:
    fake = FakeServices()
    fake.metrics = RecordingMetrics()
    return fake


def calls(services: FakeServices) -> list[tuple[str, ...]]:
    recorder: RecordingMetrics = services.metrics  # type: ignore[assignment]
    return recorder.of("api_call")


async def handle(services: FakeServices, wire: WireRequest) -> int:
    dialect = HuaweiDialect(services, [PRODUCT])  # type: ignore[arg-type]
    return (await dialect.handle(wire)).status


async def test_an_answered_call_is_counted_ok(services: FakeServices) -> None:
    assert await handle(services, request("POST", reset_path(), BODY)) == 200
    assert calls(services) == [("huawei", MODIFY_AUTH, "OK")]


async def test_refusals_before_authentication_are_counted(services: FakeServices) -> None:
    # Routed (Huawei's gateway routes first), then refused: the action is known.
    assert await handle(services, request("POST", reset_path(), BODY, secret="wrong")) == 401
    # Not routed: the client's path never becomes a label.
    unrouted = WireRequest(method="GET", path="/v2/p/<script>", query="", headers={})
    assert await handle(services, unrouted) == 404
    assert calls(services) == [
        ("huawei", MODIFY_AUTH, "APIGW.0301"),
        ("huawei", "unknown", "APIGW.0101"),
    ]


async def test_rate_limit_and_replay_refusals(services: FakeServices) -> None:
    services.error = e.RequestThrottled("over the limit")
    await handle(services, request("POST", reset_path(), BODY))
    services.error = None
    replayed = request("POST", reset_path(), BODY + b" ")  # another signature
    assert await handle(services, replayed) == 200
    assert await handle(services, replayed) == 401
    recorder: RecordingMetrics = services.metrics  # type: ignore[assignment]
    assert recorder.of("refused") == [("huawei", "rate_limit"), ("huawei", "replay")]
    assert [code for *_, code in calls(services)][-1] == "APIGW.0301"


async def test_an_internal_error_is_counted_with_its_code(services: FakeServices) -> None:
    services.error = RuntimeError("boom")
    assert await handle(services, request("POST", reset_path(), BODY)) == 500
    assert calls(services) == [("huawei", MODIFY_AUTH, "111500000")]


async def test_the_call_runs_under_its_request_context(services: FakeServices) -> None:
    seen: list[RequestContext | None] = []

    async def reset(caller: Any, **kwargs: Any) -> QueuedTask:
        seen.append(CURRENT_REQUEST.get())
        return QueuedTask()

    services.resets = SimpleNamespace(reset_password_and_wait=reset)
    assert await handle(services, request("POST", reset_path(), BODY)) == 200
    [context] = seen
    assert context is not None
    assert (context.vendor, context.tenant, context.action) == ("huawei", PROJECT, MODIFY_AUTH)
    assert len(context.request_id) == 32
    assert CURRENT_REQUEST.get() is None  # reset once answered


async def test_a_cancelled_call_is_counted_interrupted(services: FakeServices) -> None:
    async def reset(caller: Any, **kwargs: Any) -> QueuedTask:
        raise asyncio.CancelledError()

    services.resets = SimpleNamespace(reset_password_and_wait=reset)
    with pytest.raises(asyncio.CancelledError):
        await handle(services, request("POST", reset_path(), BODY))
    assert calls(services) == [("huawei", MODIFY_AUTH, "Interrupted")]
    assert CURRENT_REQUEST.get() is None
