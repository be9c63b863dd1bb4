"""Contract tests of ``RedisEngine``'s plans on a real primary with two replicas that log in to
it as ``default``: the primary is discovered (not assumed from the declared order); resetting
``default`` is staged on the primary (new password beside the old one), each replica switches
``masterauth``, the last step drops the old password and proves that every replica logs in
again. Undoing the plan brings back the old password and ``masterauth`` everywhere; sentinels
follow (and are restored); a primary they watch gets ``masterauth`` for a failover."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from keyturn.core.errors import EngineRejected
from keyturn.core.model import Instance, NodeRole
from keyturn.engines import redis_admins, redis_plan
from keyturn.engines.redis import RedisEngine
from tests.support.logins import can_login
from tests.support.plans import instance_of, planned
from tests.support.redis_replication import client, force_reconnect, replicated
from tests.support.redis_sentinel import RedisSentinel
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.engine


def instance(servers: list[RedisServer], sentinels: Sequence[str] = ()) -> Instance:
    return instance_of([server.url() for server in servers], sentinels=sentinels)


async def test_the_plan_stages_the_replication_account_and_keeps_replication(
    redis_engine: RedisEngine, replicated_redis: list[RedisServer]
) -> None:
    old = replicated_redis[0].password or ""
    new = "Repl-new-pass-1"
    run = await planned(redis_engine, instance(replicated_redis), "default", new)
    steps = [(s.label, s.endpoint) for s in run.plan.steps]
    primary = f"127.0.0.1:{replicated_redis[0].port}"
    assert steps[0] == ("set password", primary)
    assert set(steps[1:3]) == {
        ("set password", f"127.0.0.1:{s.port}") for s in replicated_redis[1:]
    }
    assert steps[3:] == [("drop the old passwords, replicas log in again", primary)]
    await run.apply(upto=3)
    # Staged: the primary still takes the old password, so no replica is locked out yet.
    assert can_login(replicated_redis[0].port, old) and can_login(replicated_redis[0].port, new)
    await run.apply()
    await run.check()
    for server in replicated_redis:
        assert can_login(server.port, new)
        assert not can_login(server.port, old)
    assert replicated(replicated_redis, new, "after-settle")
    force_reconnect(replicated_redis, new)
    assert replicated(replicated_redis, new, "after-reconnect")


async def test_the_primary_is_discovered_not_assumed(
    redis_engine: RedisEngine, replicated_redis: list[RedisServer]
) -> None:
    # Declared replicas first: discovery still puts the primary first.
    topology = await redis_engine.discover(
        instance([replicated_redis[2], replicated_redis[1], replicated_redis[0]])
    )
    assert [n.role for n in topology.nodes] == [
        NodeRole.PRIMARY,
        NodeRole.REPLICA,
        NodeRole.REPLICA,
    ]
    assert topology.nodes[0].endpoint == f"127.0.0.1:{replicated_redis[0].port}"


async def test_probes_tell_the_discover_that_follows_each_nodes_master(
    redis_engine: RedisEngine,
    replicated_redis: list[RedisServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reset's health probes read each node's ROLE in the round trip they make anyway; the
    task's ``discover`` right after uses those instead of asking again, once: the next
    ``discover`` asks every node."""
    declared = instance([replicated_redis[2], replicated_redis[1], replicated_redis[0]])
    asked: list[str] = []
    sends = redis_admins.cmd

    async def counted(client: Any, *args: Any) -> Any:
        asked.append(str(args[0]))
        return await sends(client, *args)

    monkeypatch.setattr(redis_plan, "cmd", counted)
    for node in declared.nodes:
        await redis_engine.probe(node, "default")
    for expected in ([], ["ROLE"] * 3):
        asked.clear()
        topology = await redis_engine.discover(declared)
        assert [n.role for n in topology.nodes] == [
            NodeRole.PRIMARY,
            NodeRole.REPLICA,
            NodeRole.REPLICA,
        ]
        assert topology.nodes[0].endpoint == f"127.0.0.1:{replicated_redis[0].port}"
        assert asked == expected


async def test_undo_brings_back_password_and_masterauth(
    redis_engine: RedisEngine, replicated_redis: list[RedisServer]
) -> None:
    old = replicated_redis[0].password or ""
    run = await planned(redis_engine, instance(replicated_redis), "default", "Repl-new-pass-2")
    snapshots = list(run.snapshots.values())
    assert sum("masterauth" in s.data for s in snapshots) == 2
    assert {s.data.get("masterauth") for s in snapshots} == {None, old}
    await run.apply()
    await run.undo()
    for server in replicated_redis:
        assert can_login(server.port, old)
        assert not can_login(server.port, "Repl-new-pass-2")
    force_reconnect(replicated_redis, old)
    assert replicated(replicated_redis, old, "after-restore")


async def test_finishing_fails_when_a_replica_cannot_log_in_again(
    redis_engine: RedisEngine, replicated_redis: list[RedisServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("keyturn.engines.redis_topology.RELINK_SECONDS", 1.5)
    run = await planned(redis_engine, instance(replicated_redis), "default", "Repl-new-pass-3")
    # Only the primary and the first replica learn the new password: the second replica
    # keeps the old masterauth and cannot log in again once the old password is dropped.
    steps = run.plan.steps
    await steps[0].apply()
    await steps[1].apply()
    with pytest.raises(EngineRejected, match="did not log in to its primary again"):
        await steps[-1].apply()


# ---------------------------------------------------------------------- sentinel


async def test_sentinel_gets_the_new_auth_pass_and_logs_in_again(
    redis_engine: RedisEngine, replicated_redis: list[RedisServer], sentinel: RedisSentinel
) -> None:
    new = "Sentinel-new-pass-1"
    run = await planned(redis_engine, instance(replicated_redis, [sentinel.url()]), "default", new)
    assert run.plan.topology.shape == "sentinel master mymaster"
    assert run.plan.steps[-1].label == "sentinels"
    await run.apply()
    await run.check()
    assert f"auth-pass mymaster {new}" in sentinel.config_text()
    assert sentinel.master()["flags"] == "master"
    # Roll back: the nodes and the sentinel get the old password again.
    old = replicated_redis[0].password or ""
    await run.undo()
    assert f"auth-pass mymaster {old}" in sentinel.config_text()
    assert sentinel.master()["flags"] == "master"


async def test_sentinel_with_a_wrong_auth_pass_fails_the_check(
    redis_engine: RedisEngine,
    replicated_redis: list[RedisServer],
    sentinel: RedisSentinel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("keyturn.engines.redis_topology.RELINK_SECONDS", 2.5)
    # The nodes keep their password but the sentinel is handed another one: once its links
    # are cut it cannot log in again, and the step must say so.
    run = await planned(
        redis_engine, instance(replicated_redis, [sentinel.url()]), "default", "Not-the-password-1"
    )
    with pytest.raises(EngineRejected, match="did not log in again"):
        await run.plan.steps[-1].apply()


async def test_a_watched_primary_gets_masterauth_for_a_failover(
    redis_engine: RedisEngine, replicated_redis: list[RedisServer], sentinel: RedisSentinel
) -> None:
    # The primary has no masterauth: once Sentinel made it a replica it could not log in to
    # the promoted node. The plan gives it the new password as masterauth, persisted; undo
    # clears it again.
    primary, new = replicated_redis[0], "Sentinel-new-pass-2"
    run = await planned(redis_engine, instance(replicated_redis, [sentinel.url()]), "default", new)
    labels = [(s.label, s.endpoint) for s in run.plan.steps]
    assert ("masterauth for a failover", f"127.0.0.1:{primary.port}") in labels
    await run.apply()
    await run.check()
    admin = client(primary, new)
    try:
        assert admin.config_get("masterauth") == {"masterauth": new}
    finally:
        admin.close()
    assert primary.conf_path is not None and f'masterauth "{new}"' in primary.conf_path.read_text()
    await run.undo()
    admin = client(primary, primary.password or "")
    try:
        assert admin.config_get("masterauth") == {"masterauth": ""}
    finally:
        admin.close()
