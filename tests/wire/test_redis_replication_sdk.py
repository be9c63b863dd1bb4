"""Replicated Redis through the official Tencent SDK: an instance of a primary and two replicas
that log in to it as ``default``, the very account keyturn administers them with, watched by a
Redis Sentinel.

A reset succeeds on every node, the replicas keep replicating after a forced reconnect, the
sentinel holds the new auth-pass and logs in again, and a second reset works with the
credentials keyturn rotated for itself. After a Sentinel failover the reset is planned from
the node the sentinel promoted, and replication stays authenticated through the next failover
too (every node got the new ``masterauth``). With one replica stopped,
the reset is refused with the vendor's code and the old password still works everywhere.
Resetting the account keyturn logs in with is the point here, so the instance opts in
(``allow_admin_reset``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest
import redis

from tests.support.keyturn_server import KeyturnServer
from tests.support.logins import can_login
from tests.support.passwords import new_instance_id, new_password
from tests.support.redis_replication import force_reconnect, prepare_failover, replicated
from tests.support.redis_sentinel import MASTER, RedisSentinel
from tests.support.redis_server import RedisServer
from tests.support.sdk import code_of, redis_sdk, reset, wait_task

pytestmark = pytest.mark.engine


def register(
    keyturn: KeyturnServer, replicated_redis: list[RedisServer], sentinels: Sequence[str] = ()
) -> str:
    instance_id = new_instance_id()
    keyturn.add_instance(
        instance_id,
        [server.url() for server in replicated_redis],
        sentinels=sentinels,
        allow_admin_reset=True,
    )
    return instance_id


def test_reset_on_three_nodes_keeps_replication(
    keyturn: KeyturnServer, replicated_redis: list[RedisServer]
) -> None:
    watcher = RedisSentinel(replicated_redis[0]).start()
    try:
        watcher.wait_replicas(2)
        check_reset(keyturn, replicated_redis, watcher)
    finally:
        watcher.close()


def check_reset(
    keyturn: KeyturnServer, replicated_redis: list[RedisServer], watcher: RedisSentinel
) -> None:
    instance_id = register(keyturn, replicated_redis, [watcher.url()])
    old = replicated_redis[0].password or ""
    client = redis_sdk(keyturn.endpoint)
    new = new_password()
    info = wait_task(client, reset(client, instance_id, Password=new))
    assert info.Status == "succeed", info.TaskMessage
    for server in replicated_redis:
        assert can_login(server.port, new)
        assert not can_login(server.port, old)
    force_reconnect(replicated_redis, new)
    assert replicated(replicated_redis, new, "after-reset")
    assert f"auth-pass mymaster {new}" in watcher.config_text()
    assert watcher.master()["flags"] == "master"
    # keyturn administers the nodes as `default`: it must still get in for the next reset.
    newer = new_password()
    assert wait_task(client, reset(client, instance_id, Password=newer)).Status == "succeed"
    force_reconnect(replicated_redis, newer)
    assert replicated(replicated_redis, newer, "after-second-reset")


def test_reset_after_a_sentinel_failover(
    keyturn: KeyturnServer, replicated_redis: list[RedisServer]
) -> None:
    prepare_failover(replicated_redis[0])
    watcher = RedisSentinel(replicated_redis[0], down_after_ms=1000, failover_timeout_ms=3000)
    watcher.start()
    try:
        watcher.wait_replicas(2)
        instance_id = register(keyturn, replicated_redis, [watcher.url()])
        old = replicated_redis[0].password or ""
        ordered = fail_over(watcher, replicated_redis)
        assert ordered[0] is not replicated_redis[0]
        client = redis_sdk(keyturn.endpoint)
        new = new_password()
        info = wait_task(client, reset(client, instance_id, Password=new))
        assert info.Status == "succeed", info.TaskMessage
        for server in replicated_redis:
            assert can_login(server.port, new)
            assert not can_login(server.port, old)
        for server in replicated_redis:
            server.password = new
        force_reconnect(ordered, new)
        assert replicated(ordered, new, "after-failover-reset")
        assert f"auth-pass {MASTER} {new}" in watcher.config_text()
        assert watcher.wait_settled()
        # Another failover: whichever node is promoted now, the others log in to it.
        ordered = fail_over(watcher, ordered)
        force_reconnect(ordered, new)
        assert replicated(ordered, new, "after-second-failover")
    finally:
        watcher.close()


def fail_over(watcher: RedisSentinel, servers: list[RedisServer]) -> list[RedisServer]:
    """Force a failover (``SENTINEL FAILOVER``); the servers, the new primary first, once every
    replica replicates from it."""
    before = watcher.primary_port()
    deadline = time.monotonic() + 30
    admin = watcher.client()
    try:
        while True:
            try:
                admin.execute_command("SENTINEL", "FAILOVER", MASTER)
                break
            except redis.ResponseError:
                # NOGOODSLAVE until the sentinel has fresh INFO from a replica (or INPROG).
                assert time.monotonic() < deadline, "the sentinel refused to fail over"
                time.sleep(0.5)
    finally:
        admin.close()
    while watcher.primary_port() == before or not watcher.wait_settled(1):
        assert time.monotonic() < deadline, "the sentinel did not fail over"
        time.sleep(0.1)
    primary = next(s for s in servers if s.port == watcher.primary_port())
    others = [s for s in servers if s is not primary]
    for server in others:
        while server.replication().get("master_port") != str(primary.port):
            assert time.monotonic() < deadline, "a replica did not follow the new primary"
            time.sleep(0.1)
        server.wait_link_up()
    return [primary, *others]


def test_reset_with_a_replica_down_is_refused_and_changes_nothing(
    keyturn: KeyturnServer, replicated_redis: list[RedisServer]
) -> None:
    instance_id = register(keyturn, replicated_redis)
    old = replicated_redis[0].password or ""
    replicated_redis[2].stop()
    client = redis_sdk(keyturn.endpoint)
    code = code_of(lambda: reset(client, instance_id, Password=new_password()))
    assert code == "ResourceUnavailable.InstanceStatusAbnormal"
    for server in replicated_redis[:2]:
        assert can_login(server.port, old)
    replicated_redis[2].start()
    replicated_redis[2].wait_link_up()
    assert can_login(replicated_redis[2].port, old)
    assert replicated(replicated_redis, old, "after-refusal")
