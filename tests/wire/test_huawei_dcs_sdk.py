"""Huawei Cloud DCS (API v2) end to end: the official huaweicloudsdkdcs client against a real
keyturn server resetting and changing passwords on real throwaway redis-servers.

keyturn logs in with a dedicated admin user, so the instance password (``default``) is the
caller's to reset; an instance keyturn logs in to as ``default`` refuses both APIs unless it
opts in (``allow_admin_reset``)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import httpx
import pytest

from keyturn.config import load_settings
from keyturn.core.model import Product
from keyturn.core.store_ports import Page
from tests.support.huawei_sdk import (
    ClientRequestException,
    ListInstancesRequest,
    ShowInstanceRequest,
    ShowJobInfoRequest,
    dcs_client,
    reset_password,
    sdk_signed,
    update_password,
)
from tests.support.keyturn_server import HW_PROJECT, OTHER_TENANT, KeyturnServer
from tests.support.logins import can_login
from tests.support.passwords import USED_PASSWORDS, leaked, new_password

pytestmark = pytest.mark.engine

RESET_OK = {
    "lock_time": "0",
    "lock_time_left": "0",
    "retry_times_left": "5",
    "code": "1",
    "message": "success",
    "ext_message": None,
}


def refused(call: Callable[[], object]) -> ClientRequestException:
    with pytest.raises(ClientRequestException) as caught:
        call()
    error = caught.value
    assert error.request_id, "every error carries X-Request-Id"
    return error


def next_second() -> None:
    """Sleep into the next wall-clock second (X-Sdk-Date has one-second resolution)."""
    time.sleep(1.01 - time.time() % 1)


def new_id() -> str:
    return str(uuid.uuid4())


def register(
    keyturn: KeyturnServer, servers: list[Any], *, own_admin: bool = False, **options: Any
) -> str:
    """Register ``servers``; keyturn logs in with a dedicated admin user, or (``own_admin``)
    as ``default`` on an instance that allows resetting it."""
    instance_id = new_id()
    options.setdefault("tenant", HW_PROJECT)
    keyturn.add_instance(
        instance_id,
        [s.url() if own_admin else s.admin_url() for s in servers],
        allow_admin_reset=own_admin,
        product=Product.HUAWEI_DCS,
        region="cn-north-4",
        **options,
    )
    return instance_id


@pytest.fixture
def instance(keyturn: KeyturnServer, redis_server) -> tuple[str, Any]:
    return register(keyturn, [redis_server], name="orders-cache"), redis_server


def test_reset_password_end_to_end(keyturn: KeyturnServer, instance) -> None:
    instance_id, server = instance
    client = dcs_client(keyturn.endpoint)
    new = new_password()
    response = reset_password(client, instance_id, new_password=new, no_password_access=False)
    # Synchronous: the answer comes once the new password works.
    assert can_login(server.port, new)
    assert not can_login(server.port, server.password)
    assert response.status_code == 200
    assert json.loads(response.raw_content) == RESET_OK


def test_password_free_and_back(keyturn: KeyturnServer, instance) -> None:
    instance_id, server = instance
    client = dcs_client(keyturn.endpoint)
    assert reset_password(client, instance_id, no_password_access=True).code == "1"
    assert can_login(server.port, None)
    shown = client.show_instance(ShowInstanceRequest(instance_id=instance_id))
    assert shown.no_password_access == "true"
    new = new_password()
    reset_password(client, instance_id, new_password=new)
    assert not can_login(server.port, None)
    assert can_login(server.port, new)
    shown = client.show_instance(ShowInstanceRequest(instance_id=instance_id))
    assert shown.no_password_access == "false"


def test_every_node_gets_the_password(keyturn: KeyturnServer, redis_server_factory) -> None:
    first, second = redis_server_factory(), redis_server_factory()
    instance_id = register(keyturn, [first, second])
    new = new_password()
    reset_password(dcs_client(keyturn.endpoint), instance_id, new_password=new)
    for server in (first, second):
        assert can_login(server.port, new)
        assert not can_login(server.port, server.password)


def test_request_errors(keyturn: KeyturnServer, instance) -> None:
    instance_id, server = instance
    client = dcs_client(keyturn.endpoint)
    cases = [
        (lambda: reset_password(client, instance_id, new_password="short"), "111400019", 400),
        (
            lambda: reset_password(client, instance_id, new_password="alllowercase1"),
            "111400019",
            400,
        ),
        (lambda: reset_password(client, instance_id), "111400063", 400),
        (lambda: reset_password(client, instance_id, no_password_access=False), "111400063", 400),
        (lambda: reset_password(client, new_id(), new_password=new_password()), "111404022", 404),
        (
            lambda: reset_password(client, "not-a-uuid", new_password=new_password()),
            "111400061",
            400,
        ),
        (lambda: update_password(client, instance_id, old="x", new=""), "111400063", 400),
    ]
    for call, code, status in cases:
        error = refused(call)
        assert (error.error_code, error.status_code) == (code, status), error.error_msg
    assert can_login(server.port, server.password)  # nothing was applied

    current = new_password()
    reset_password(client, instance_id, new_password=current)
    next_second()  # else the same request, signed in the same second, is refused as a replay
    same = refused(lambda: reset_password(client, instance_id, new_password=current))
    assert (same.error_code, same.status_code) == ("111400019", 400)
    assert "differ" in same.error_msg
    same = refused(lambda: update_password(client, instance_id, old=current, new=current))
    assert same.error_code == "111400019"
    assert can_login(server.port, current)


def test_other_projects_and_password_free_denied(
    keyturn: KeyturnServer, redis_server_factory
) -> None:
    client = dcs_client(keyturn.endpoint)
    theirs = redis_server_factory()
    foreign = register(keyturn, [theirs], tenant=OTHER_TENANT)
    error = refused(lambda: reset_password(client, foreign, new_password=new_password()))
    assert (error.error_code, error.status_code) == ("111404022", 404)
    assert can_login(theirs.port, theirs.password)

    # The key's project is HW_PROJECT: naming another project is refused before anything else.
    elsewhere = dcs_client(keyturn.endpoint, project=OTHER_TENANT.ljust(32, "0"))
    mine = register(keyturn, [redis_server_factory()], password_free_allowed=False)
    error = refused(lambda: elsewhere.show_instance(ShowInstanceRequest(instance_id=mine)))
    assert (error.error_code, error.status_code) == ("111401004", 401)

    error = refused(lambda: reset_password(client, mine, no_password_access=True))
    assert (error.error_code, error.status_code) == ("DCS.4839", 400)


def test_bad_credentials(keyturn: KeyturnServer, instance) -> None:
    instance_id, server = instance
    wrong_sk = dcs_client(keyturn.endpoint, sk="not-the-secret-key-000000")
    unknown_ak = dcs_client(keyturn.endpoint, ak="HWAKUNKNOWN000000001")
    bad_signature = refused(
        lambda: reset_password(wrong_sk, instance_id, new_password=new_password())
    )
    unknown = refused(
        lambda: unknown_ak.show_instance(ShowInstanceRequest(instance_id=instance_id))
    )
    for error in (bad_signature, unknown):
        assert (error.error_code, error.status_code) == ("APIGW.0301", 401)
        assert error.error_msg.startswith("Incorrect IAM authentication information: ")
    assert "signature" in bad_signature.error_msg
    assert "does not exist" in unknown.error_msg
    assert can_login(server.port, server.password)


def test_skewed_date_is_refused(keyturn: KeyturnServer, instance) -> None:
    instance_id, _ = instance
    path = f"/v2/{HW_PROJECT}/instances/{instance_id}"
    old = (datetime.now(UTC) - timedelta(minutes=20)).strftime("%Y%m%dT%H%M%SZ")
    url, headers = sdk_signed(keyturn.endpoint, "GET", path, sdk_date=old)
    response = httpx.get(url, headers=headers)
    assert response.status_code == 401
    assert response.json()["error_code"] == "APIGW.0301"
    assert "X-Sdk-Date" in response.json()["error_msg"]
    url, headers = sdk_signed(keyturn.endpoint, "GET", path)
    assert httpx.get(url, headers=headers).status_code == 200


def test_replayed_reset_is_refused(keyturn: KeyturnServer, instance) -> None:
    instance_id, server = instance
    body = json.dumps({"no_password_access": True}).encode()
    path = f"/v2/{HW_PROJECT}/instances/{instance_id}/password/reset"
    url, headers = sdk_signed(keyturn.endpoint, "POST", path, body=body)
    assert httpx.post(url, headers=headers, content=body).status_code == 200
    new = new_password()
    reset_password(dcs_client(keyturn.endpoint), instance_id, new_password=new)
    replay = httpx.post(url, headers=headers, content=body)
    assert replay.status_code == 401 and replay.json()["error_code"] == "APIGW.0301"
    assert can_login(server.port, new) and not can_login(server.port, None)


def test_update_password_locks_after_five_wrong_old_passwords(
    keyturn: KeyturnServer, redis_server_factory
) -> None:
    client = dcs_client(keyturn.endpoint)
    locked_server, other_server = redis_server_factory(), redis_server_factory()
    locked_id, other_id = register(keyturn, [locked_server]), register(keyturn, [other_server])
    current = new_password()
    reset_password(client, locked_id, new_password=current)

    for left in (4, 3, 2, 1):
        answer = update_password(client, locked_id, old=new_password(), new=new_password())
        assert (answer.result, answer.retry_times_left) == ("passwordFailed", str(left))
    answer = update_password(client, locked_id, old=new_password(), new=new_password())
    assert (answer.result, answer.retry_times_left) == ("locked", "0")
    assert (answer.lock_time, answer.lock_time_left) == ("5", "5")
    # During the lock even the right old password changes nothing.
    blocked = new_password()
    answer = update_password(client, locked_id, old=current, new=blocked)
    assert answer.result == "locked" and int(answer.lock_time_left) >= 1
    assert can_login(locked_server.port, current) and not can_login(locked_server.port, blocked)

    # Another instance is not locked: the right old password changes it.
    new = new_password()
    answer = update_password(client, other_id, old=other_server.password, new=new)
    assert (answer.result, answer.retry_times_left) == ("success", "5")
    assert answer.message
    assert can_login(other_server.port, new) and not can_login(
        other_server.port, other_server.password
    )

    # A password-free instance has no password to change (DCS documents it): reset it instead.
    reset_password(client, other_id, no_password_access=True)
    error = refused(lambda: update_password(client, other_id, old=new, new=new_password()))
    assert (error.error_code, error.status_code) == ("111400026", 400)
    assert can_login(other_server.port, None)


def latest_task_id(keyturn: KeyturnServer, instance_id: str) -> int:
    async def go() -> int:
        from keyturn.bootstrap import open_admin_store

        store = await open_admin_store(
            load_settings(data_dir=keyturn.data_dir, env=keyturn.store_env)
        )
        try:
            tasks, _ = await store.list_tasks(
                HW_PROJECT, instance_id=instance_id, page=Page(limit=1)
            )
            return tasks[0].id
        finally:
            await store.close()

    return asyncio.run(go())


def test_reads(keyturn: KeyturnServer, redis_server_factory) -> None:
    client = dcs_client(keyturn.endpoint)
    server = redis_server_factory()
    instance_id = register(keyturn, [server], name="reads-cache")
    reset_password(client, instance_id, new_password=new_password())

    shown = client.show_instance(ShowInstanceRequest(instance_id=instance_id))
    assert (shown.instance_id, shown.name, shown.engine, shown.status) == (
        instance_id,
        "reads-cache",
        "Redis",
        "RUNNING",
    )
    assert (shown.ip, shown.port, shown.no_password_access) == ("127.0.0.1", server.port, "false")
    assert shown.engine_version.startswith("7") and shown.enable_ssl is False
    assert shown.created_at.endswith("Z")

    found = client.list_instances(ListInstancesRequest(instance_id=instance_id))
    assert found.instance_num == 1 and found.instances[0].instance_id == instance_id
    named = client.list_instances(ListInstancesRequest(name="reads-cache", limit=1000))
    assert [i.instance_id for i in named.instances] == [instance_id]
    everything = client.list_instances(ListInstancesRequest(limit=1000))
    assert everything.instance_num >= 1 and instance_id in {
        i.instance_id for i in everything.instances
    }
    assert client.list_instances(ListInstancesRequest(status="FROZEN")).instance_num == 0
    error = refused(lambda: client.list_instances(ListInstancesRequest(limit=100000)))
    assert (error.error_code, error.status_code) == ("111400063", 400)

    job_id = str(latest_task_id(keyturn, instance_id))
    job = client.show_job_info(ShowJobInfoRequest(job_id=job_id))
    assert (job.job_id, job.status, job.fail_reason) == (job_id, "SUCCESS", "")
    assert job.begin_time and job.end_time
    for unknown in ("987654321", "not-a-job"):
        error = refused(partial(client.show_job_info, ShowJobInfoRequest(job_id=unknown)))
        assert (error.error_code, error.status_code) == ("111404001", 404)


def send(keyturn: KeyturnServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"http://{keyturn.endpoint}{path}", timeout=10, **kwargs)


def signed(
    keyturn: KeyturnServer,
    method: str,
    path: str,
    body: bytes = b"",
    query: list[tuple[str, object]] | None = None,
) -> httpx.Response:
    url, headers = sdk_signed(keyturn.endpoint, method, path, body=body, query=query)
    return httpx.request(method, url, headers=headers, content=body, timeout=10)


def test_garbage_is_always_a_4xx_with_a_code(keyturn: KeyturnServer, instance) -> None:
    instance_id, server = instance
    base = f"/v2/{HW_PROJECT}/instances/{instance_id}"
    reset_path, change_path = base + "/password/reset", base + "/password"
    expectations: list[tuple[httpx.Response, str, int]] = [
        (signed(keyturn, "POST", reset_path, b"{not json"), "111400005", 400),
        (signed(keyturn, "POST", reset_path, b"\xff\xfe\x00garbage"), "111400005", 400),
        (signed(keyturn, "POST", reset_path, b"[1, 2]"), "111400005", 400),
        (signed(keyturn, "POST", reset_path, b""), "111400004", 400),
        (signed(keyturn, "POST", reset_path, b'{"new_password": 12345678}'), "111400063", 400),
        (signed(keyturn, "POST", reset_path, b'{"no_password_access": "yes"}'), "111400063", 400),
        (
            signed(keyturn, "PUT", change_path, b'{"old_password": ["a"], "new_password": "b"}'),
            "111400063",
            400,
        ),
        (signed(keyturn, "POST", reset_path, b"[" * 100_000), "111400005", 400),
        (signed(keyturn, "DELETE", reset_path), "APIGW.0101", 404),
        (signed(keyturn, "GET", "/v2/nothing/here"), "APIGW.0101", 404),
        (signed(keyturn, "GET", f"/v2/{HW_PROJECT}/instances/%ff%fe"), "111400061", 400),
        (signed(keyturn, "GET", f"/v2/{HW_PROJECT}/jobs/%ff"), "111404001", 404),
        (
            signed(keyturn, "GET", f"/v2/{HW_PROJECT}/instances", query=[("limit", "abc")]),
            "111400063",
            400,
        ),
        (
            signed(keyturn, "GET", f"/v2/{HW_PROJECT}/instances", query=[("offset", "-1")]),
            "111400063",
            400,
        ),
        (signed(keyturn, "GET", f"/v2/{'%C3%A9' * 3}/instances"), "111400002", 400),
        (
            send(keyturn, "POST", reset_path, content=b'{"no_password_access": true}'),
            "APIGW.0301",
            401,
        ),
        (
            send(keyturn, "GET", base, headers={"Authorization": "SDK-HMAC-SHA256 junk"}),
            "APIGW.0301",
            401,
        ),
        (
            send(keyturn, "GET", base, headers={"Authorization": "SDK-HMAC-SM3 Access=a"}),
            "APIGW.0301",
            401,
        ),
        (send(keyturn, "PATCH", "/v2/"), "APIGW.0101", 404),
        (send(keyturn, "POST", reset_path, content=b"x" * (1024 * 1024 + 1)), "APIGW.0201", 413),
    ]
    for response, code, status in expectations:
        context = (response.request.method, response.request.url, response.text)
        assert response.status_code == status, context
        assert response.headers["x-request-id"], context
        assert response.json()["error_code"] == code, context
        assert response.json()["error_ext_msg"] is None
    assert can_login(server.port, server.password)
    ok = signed(keyturn, "GET", base)
    assert ok.status_code == 200 and ok.headers["x-request-id"]


def test_instance_password_keyturn_logs_in_with(
    keyturn: KeyturnServer, redis_server_factory
) -> None:
    """keyturn logs in as ``default``: reset and change are refused (111400026) and nothing
    changes; with ``allow_admin_reset`` both work and keyturn keeps administering the
    instance with the new password."""
    client = dcs_client(keyturn.endpoint)
    server = redis_server_factory()
    instance_id = new_id()
    keyturn.add_instance(instance_id, [server.url()], product=Product.HUAWEI_DCS, tenant=HW_PROJECT)
    for call in (
        lambda: reset_password(client, instance_id, new_password=new_password()),
        lambda: reset_password(client, instance_id, no_password_access=True),
        lambda: update_password(client, instance_id, old=server.password, new=new_password()),
    ):
        error = refused(call)
        assert (error.error_code, error.status_code) == ("111400026", 400)
    assert can_login(server.port, server.password) and not can_login(server.port, None)

    opted = redis_server_factory()
    allowed = register(keyturn, [opted], own_admin=True)
    new = new_password()
    assert reset_password(client, allowed, new_password=new).code == "1"
    assert can_login(opted.port, new) and not can_login(opted.port, opted.password)
    newer = new_password()
    assert update_password(client, allowed, old=new, new=newer).result == "success"
    assert can_login(opted.port, newer)


def test_no_secret_leaks(keyturn: KeyturnServer) -> None:
    """Runs last in this module: no password set above is in the log or the data dir."""
    assert USED_PASSWORDS
    assert leaked(keyturn, USED_PASSWORDS) == []
    assert "Traceback" not in keyturn.log()
