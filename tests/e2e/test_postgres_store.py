"""``keyturn serve`` on a PostgreSQL store (``KEYTURN_DATABASE_URL``), through the official SDKs.

A Tencent Redis reset runs end to end with every record in PostgreSQL, and the server migrated
the empty database itself. Three servers started at once on one empty database all come up (one
migrates and reconciles the inventory, the others wait for it). With the store stopped, every
vendor's call answers its internal/unavailable code within the store timeout (no hang, no HTML),
``/readyz`` turns 503 while ``/healthz`` stays 200, and once it is back everything answers
again; a task the store fails under (stopped after the change was applied) finishes when it is
back.
"""

from __future__ import annotations

import base64
import time

import httpx
import psycopg
import pytest
from huaweicloudsdkcore.exceptions.exceptions import ServiceResponseException
from huaweicloudsdkdcs.v2 import ListInstancesRequest

from tests.support.alibaba_sdk import KvstoreSdk, sdk_error
from tests.support.huawei_sdk import dcs_client
from tests.support.logins import can_login
from tests.support.passwords import new_instance_id, new_password
from tests.support.sdk import code_of, redis_sdk, reset, task_info, wait_task

pytestmark = pytest.mark.engine

#: The store timeout the servers here run with, and the bound a call must answer within
#: (generous: the machine is loaded, and a call may touch the store a few times).
STORE_TIMEOUT = 2
BOUND = 5 * STORE_TIMEOUT + 5
MASTER_KEY = base64.b64encode(bytes(range(32))).decode()


def rows(url: str, query: str) -> int:
    with psycopg.connect(url, connect_timeout=5) as conn:
        found = conn.execute(query).fetchone()
    assert found is not None
    return int(found[0])


def wait_ready(server, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while server.readyz().status_code != 200:
        assert time.monotonic() < deadline, server.readyz().text
        time.sleep(0.2)


def test_a_reset_end_to_end_on_the_postgres_store(make_server, store_postgres, redis_server):
    url = store_postgres.database(migrated=False)
    try:
        server = make_server(database_url=url)
        server.start()
        assert server.readyz().json() == {"status": "ready"}
        instance_id = new_instance_id()
        server.add_instance(instance_id, [redis_server.admin_url()])
        client = redis_sdk(server.endpoint)
        new = new_password()
        info = wait_task(client, reset(client, instance_id, Password=new))
        assert info.Status == "succeed", info.TaskMessage
        assert can_login(redis_server.port, new)
        # Everything is in PostgreSQL: no SQLite file in the data dir.
        assert not (server.data_dir / "keyturn.db").exists()
        assert rows(url, "SELECT count(*) FROM tasks WHERE state = 'succeed'") == 1
        assert rows(url, "SELECT count(*) FROM audit_log") >= 2
        server.stop()
    finally:
        store_postgres.drop(url)


def test_three_servers_starting_at_once_on_an_empty_postgres(make_server, store_postgres):
    url = store_postgres.database(migrated=False)
    try:
        env = {"KEYTURN_MASTER_KEY": MASTER_KEY}
        servers = [make_server(database_url=url, extra_env=env) for _ in range(3)]
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_started(timeout=60)
        for server in servers:
            wait_ready(server)
        # The inventory was reconciled once: each declared key exists once.
        assert rows(url, "SELECT count(*) FROM access_keys") == 3
        client = redis_sdk(servers[2].endpoint)
        assert code_of(lambda: task_info(client, 1)) == "ResourceNotFound"
        assert sum("waiting for it" in s.log() for s in servers) >= 1, [s.log() for s in servers]
    finally:
        store_postgres.drop(url)


def timed(call):
    started = time.monotonic()
    result = call()
    elapsed = time.monotonic() - started
    assert elapsed < BOUND, f"answered after {elapsed:.1f} s"
    return result


def test_the_store_down_answers_each_vendors_code_in_time(
    make_server, postgres_server_factory, redis_server
):
    pg = postgres_server_factory()
    server = make_server(
        database_url=pg.url(), extra_env={"KEYTURN_STORE_TIMEOUT": str(STORE_TIMEOUT)}
    )
    server.start()
    instance_id = new_instance_id()
    server.add_instance(instance_id, [redis_server.admin_url()])
    client = redis_sdk(server.endpoint)
    task_id = reset(client, instance_id, Password=new_password())
    assert wait_task(client, task_id).Status == "succeed"
    alibaba = KvstoreSdk("tea", server.endpoint)
    huawei = dcs_client(server.endpoint)

    pg.stop()
    time.sleep(1.2)  # the server's access-key cache (1 s) lapses: every call needs the store
    assert timed(lambda: code_of(lambda: task_info(client, task_id))) == "ServiceUnavailable"
    assert timed(lambda: code_of(lambda: reset(client, instance_id, Password=new_password()))) == (
        "ServiceUnavailable"
    )
    assert timed(lambda: sdk_error(lambda: alibaba.call("DescribeInstances"))) == (
        "ServiceUnavailable",
        503,
    )
    with pytest.raises(ServiceResponseException) as caught:
        timed(lambda: huawei.list_instances(ListInstancesRequest()))
    assert (caught.value.status_code, caught.value.error_code) == (500, "111500000")
    probe = timed(server.readyz)
    assert probe.status_code == 503 and probe.json()["status"] == "unavailable"
    assert httpx.get(f"http://{server.endpoint}/healthz", timeout=5).status_code == 200

    pg.start()
    wait_ready(server)
    assert task_info(client, task_id).Status == "succeed"
    assert "Instances" in alibaba.call("DescribeInstances")


def test_a_task_the_store_fails_under_finishes_when_it_is_back(
    make_server, postgres_server_factory, redis_server
):
    pg = postgres_server_factory()
    env = {"KEYTURN_STORE_TIMEOUT": str(STORE_TIMEOUT), "KEYTURN_FAULT_PAUSE": "after_apply=3"}
    server = make_server(database_url=pg.url(), extra_env=env)
    server.start()
    instance_id = new_instance_id()
    server.add_instance(instance_id, [redis_server.admin_url()])
    client = redis_sdk(server.endpoint)
    new = new_password()
    task_id = reset(client, instance_id, Password=new)
    pg.stop()  # within the pause: the new password is applied, the task not yet finished
    time.sleep(5)
    assert server.process is not None and server.process.poll() is None
    pg.start()
    info = wait_task(client, task_id, timeout=60)
    assert info.Status == "succeed", info.TaskMessage
    assert can_login(redis_server.port, new)
    assert "the store is unavailable" in server.log()
