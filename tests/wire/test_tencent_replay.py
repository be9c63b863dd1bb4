"""Tencent replay protection on the wire: a request the official SDK sent, captured byte for byte
by a recording TCP proxy and sent again, is refused with ``AuthFailure.SignatureFailure`` and
changes nothing, for TC3 and for the legacy HmacSHA256 signature (its ``Nonce``). The trade-off
of TC3 (no nonce, one-second timestamps) is pinned down too: identical reads, such as task
polling, are served however often they repeat, and the SDK's own retries re-sign."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.redis.v20180412 import models

from tests.support.keyturn_server import KeyturnServer
from tests.support.logins import can_login
from tests.support.passwords import USED_PASSWORDS, leaked, new_instance_id, new_password
from tests.support.sdk import redis_sdk, reset, task_info, wait_task
from tests.support.wire_capture import RecordingProxy, captured, send_raw

pytestmark = pytest.mark.engine

REPLAY = "AuthFailure.SignatureFailure"


@pytest.fixture
def proxy(keyturn: KeyturnServer) -> Iterator[RecordingProxy]:
    recorder = RecordingProxy(keyturn.port)
    yield recorder
    recorder.close()


@pytest.fixture
def instance(keyturn: KeyturnServer, redis_server: Any) -> tuple[str, Any]:
    instance_id = new_instance_id()
    keyturn.add_instance(instance_id, [redis_server.admin_url()])
    return instance_id, redis_server


@pytest.mark.parametrize("sign_method", [None, "HmacSHA256"], ids=["tc3", "legacy"])
def test_a_replayed_reset_is_refused_and_changes_nothing(
    keyturn: KeyturnServer, proxy: RecordingProxy, instance: tuple[str, Any], sign_method: str
) -> None:
    instance_id, server = instance
    direct = redis_sdk(keyturn.endpoint)
    # 1. The SDK resets the password through the recording proxy.
    first = new_password()
    through_proxy = redis_sdk(proxy.endpoint, sign_method=sign_method)
    task_id = reset(through_proxy, instance_id, Password=first)
    assert wait_task(direct, task_id).Status == "succeed"
    raw = captured(proxy)
    if sign_method is None:
        assert b"Authorization: TC3-HMAC-SHA256 " in raw
    else:
        assert b"Nonce=" in raw and b"SignatureMethod=HmacSHA256" in raw
    # 2. The owner moves on to another password.
    second = new_password()
    assert wait_task(direct, reset(direct, instance_id, Password=second)).Status == "succeed"
    # 3. Whoever captured the first request sends it again, byte for byte: refused.
    status, body = send_raw(keyturn.endpoint, raw)
    assert status == 200  # Tencent's errors are in the body
    error = body["Response"]["Error"]
    assert error["Code"] == REPLAY
    assert "replay" in error["Message"]
    assert "TaskId" not in body["Response"]
    # 4. Nothing changed: the engine keeps the owner's password, no task was queued.
    assert can_login(server.port, second)
    assert not can_login(server.port, first)
    listing = models.DescribeTaskListRequest()
    listing.InstanceId = instance_id
    assert direct.DescribeTaskList(listing).TotalCount == 2
    # Again and again: a replay never becomes acceptable within the clock window.
    assert send_raw(keyturn.endpoint, raw)[1]["Response"]["Error"]["Code"] == REPLAY
    assert leaked(keyturn, USED_PASSWORDS) == []


def test_a_legacy_replay_of_a_read_is_refused(
    keyturn: KeyturnServer, proxy: RecordingProxy, instance: tuple[str, Any]
) -> None:
    # A legacy request carries a random Nonce, so a repeat is always a replay.
    instance_id, _ = instance
    through_proxy = redis_sdk(proxy.endpoint, sign_method="HmacSHA256")
    listed = through_proxy.DescribeInstances(models.DescribeInstancesRequest())
    assert instance_id in {i.InstanceId for i in listed.InstanceSet}
    status, body = send_raw(keyturn.endpoint, captured(proxy))
    assert (status, body["Response"]["Error"]["Code"]) == (200, REPLAY)


def test_identical_tc3_reads_are_served(
    keyturn: KeyturnServer, proxy: RecordingProxy, instance: tuple[str, Any]
) -> None:
    """TC3 has no nonce and one-second timestamps: the SDK signs the same read made twice in a
    second identically, and polling does exactly that. Reads are therefore not refused as
    replays (a repeated read changes nothing); only changes are."""
    instance_id, _ = instance
    client = redis_sdk(keyturn.endpoint)
    task_id = reset(client, instance_id, Password=new_password())
    through_proxy = redis_sdk(proxy.endpoint)
    assert task_info(through_proxy, task_id).InstanceId == instance_id
    raw = captured(proxy)
    for _ in range(3):
        status, body = send_raw(keyturn.endpoint, raw)
        assert status == 200 and body["Response"]["InstanceId"] == instance_id
    # Polling as the SDK does it, many identical requests a second, is never refused.
    assert wait_task(client, task_id).Status == "succeed"
    for _ in range(5):
        assert task_info(client, task_id).Status == "succeed"


def test_a_forged_variant_of_a_captured_request_is_a_bad_signature(
    keyturn: KeyturnServer, proxy: RecordingProxy, instance: tuple[str, Any]
) -> None:
    # Changing the captured password (same length, so Content-Length holds) breaks the
    # signature; the replay memory is not what stops it.
    instance_id, server = instance
    first = new_password()
    task_id = reset(redis_sdk(proxy.endpoint), instance_id, Password=first)
    assert wait_task(redis_sdk(keyturn.endpoint), task_id).Status == "succeed"
    forged = new_password()
    assert len(forged) == len(first)
    raw = captured(proxy).replace(first.encode(), forged.encode())
    status, body = send_raw(keyturn.endpoint, raw)
    error = body["Response"]["Error"]
    assert (status, error["Code"]) == (200, REPLAY)
    assert "replay" not in error["Message"]
    assert can_login(server.port, first)


def test_different_resets_in_one_second_are_not_replays(
    keyturn: KeyturnServer, instance: tuple[str, Any]
) -> None:
    # Resets made in quick succession with different passwords differ in body, hence in
    # signature: each is accepted or meets the running task, none is taken for a replay.
    instance_id, _ = instance
    client = redis_sdk(keyturn.endpoint)
    tasks = []
    for _ in range(3):
        try:
            tasks.append(reset(client, instance_id, Password=new_password()))
        except TencentCloudSDKException as exc:
            assert exc.get_code() == "ResourceUnavailable.InstanceLockedError"
    assert tasks and wait_task(client, tasks[-1]).Status == "succeed"
