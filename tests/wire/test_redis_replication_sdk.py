"""Replicated Redis through the official Tencent SDK: an instance of a primary and two replicas
that log in to it as ``default``, the very account keyturn administers them with, watched by a
Redis Sentinel.

A reset succeeds on every node, the replicas keep replicating after a forced reconnect, the
sentinel holds the new auth-pass and logs in again, and a second reset works with the
credentials keyturn rotated for itself. With one replica stopped,
the reset is refused with the vendor's code and the old password still works everywhere.
Resetting the account keyturn logs in with is the point here, so the instance opts in
(``allow_admin_reset``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from tests.contract.test_engine_redis_replication import (
    force_reconnect,
    logs_in,
    replicated,
)
from tests.support.fixtures import RedisServerFactory
from tests.support.keyturn_server import KeyturnServer
from tests.support.redis_sentinel import RedisSentinel
from tests.support.redis_server import RedisServer
from tests.support.sdk import redis_sdk, reset, wait_task
from tests.wire.conftest import new_instance_id, new_password
from tests.wire.test_tencent_redis_sdk import code_of

pytestmark = pytest.mark.engine


@pytest.fixture
def cluster(redis_server_factory: RedisServerFactory) -> list[RedisServer]:
    primary = redis_server_factory()
    replicas = [
        redis_server_factory(password=primary.password, replica_of=primary) for _ in range(2)
    ]
    for replica in replicas:
        replica.wait_link_up()
    return [primary, *replicas]


def register(
    keyturn: KeyturnServer, cluster: list[RedisServer], sentinels: Sequence[str] = ()
) -> str:
    instance_id = new_instance_id()
    keyturn.add_instance(
        instance_id,
        [server.url() for server in cluster],
        sentinels=sentinels,
        allow_admin_reset=True,
    )
    return instance_id


def test_reset_on_three_nodes_keeps_replication(
    keyturn: KeyturnServer, cluster: list[RedisServer]
) -> None:
    watcher = RedisSentinel(cluster[0]).start()
    try:
        wait_for_replicas(watcher)
        check_reset(keyturn, cluster, watcher)
    finally:
        watcher.close()


def wait_for_replicas(watcher: RedisSentinel) -> None:
    deadline = time.monotonic() + 10
    while watcher.master().get("num-slaves") != "2":
        assert time.monotonic() < deadline, "the sentinel did not discover the replicas"
        time.sleep(0.1)


def check_reset(keyturn: KeyturnServer, cluster: list[RedisServer], watcher: RedisSentinel) -> None:
    instance_id = register(keyturn, cluster, [watcher.url()])
    old = cluster[0].password or ""
    client = redis_sdk(keyturn.endpoint)
    new = new_password()
    info = wait_task(client, reset(client, instance_id, Password=new))
    assert info.Status == "succeed", info.TaskMessage
    for server in cluster:
        assert logs_in(server, new)
        assert not logs_in(server, old)
    force_reconnect(cluster, new)
    assert replicated(cluster, new, "after-reset")
    assert f"auth-pass mymaster {new}" in watcher.config_text()
    assert watcher.master()["flags"] == "master"
    # keyturn administers the nodes as `default`: it must still get in for the next reset.
    newer = new_password()
    assert wait_task(client, reset(client, instance_id, Password=newer)).Status == "succeed"
    force_reconnect(cluster, newer)
    assert replicated(cluster, newer, "after-second-reset")


def test_reset_with_a_replica_down_is_refused_and_changes_nothing(
    keyturn: KeyturnServer, cluster: list[RedisServer]
) -> None:
    instance_id = register(keyturn, cluster)
    old = cluster[0].password or ""
    cluster[2].stop()
    client = redis_sdk(keyturn.endpoint)
    code = code_of(lambda: reset(client, instance_id, Password=new_password()))
    assert code == "ResourceUnavailable.InstanceStatusAbnormal"
    for server in cluster[:2]:
        assert logs_in(server, old)
    cluster[2].start()
    cluster[2].wait_link_up()
    assert logs_in(cluster[2], old)
    assert replicated(cluster, old, "after-refusal")
