"""Which node is the primary under Sentinel, from the sentinels' answers (no I/O): the master
most sentinels name, ties broken by the highest configuration epoch and retried while still
even; the plan's primary is that declared node, first, the others replicas; a master that is
not a declared node is refused. And the plan built for it: a promoted ex-replica is finished
like a staged primary, a Sentinel-watched primary without ``masterauth`` gets one."""

from __future__ import annotations

import pytest

from keyturn.core.engine_ports import CredentialSnapshot
from keyturn.core.errors import EngineRejected, EngineUnavailable
from keyturn.core.model import NodeRole
from keyturn.core.plans import Change
from keyturn.core.secrets import Secret
from keyturn.engines.redis import RedisEngine
from keyturn.engines.redis_plan import STAGED, build_plan
from keyturn.engines.redis_sentinel_discovery import SentinelView, agreed, topology_of
from tests.support.plans import instance_of

A, B, C = "127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"
INSTANCE = instance_of(
    [f"redis://kt_admin:pw@{e}" for e in (A, B, C)],
    sentinels=["redis://:s@127.0.0.1:26379/mymaster", "redis://:s@127.0.0.1:26380/mymaster"],
)


def view(master: str, epoch: int = 0, at: str = "s1") -> SentinelView:
    others = tuple(e for e in (A, B, C) if e != master)
    return SentinelView(sentinel=at, master=master, replicas=others, epoch=epoch)


def test_the_master_most_sentinels_name_wins() -> None:
    assert agreed([view(A, 5), view(B, 1, "s2"), view(B, 1, "s3")]).master == B


def test_an_even_split_goes_to_the_newest_failover() -> None:
    assert agreed([view(A, 1), view(B, 2, "s2")]).master == B


def test_an_even_split_in_the_same_epoch_is_retried() -> None:
    with pytest.raises(EngineUnavailable, match="disagree"):
        agreed([view(A, 1), view(B, 1, "s2")])
    with pytest.raises(EngineUnavailable):
        agreed([])


def test_the_primary_sentinels_name_comes_first() -> None:
    topology = topology_of(INSTANCE, view(C), "mymaster")
    assert [(n.endpoint, n.role) for n in topology.nodes] == [
        (C, NodeRole.PRIMARY),
        (A, NodeRole.REPLICA),
        (B, NodeRole.REPLICA),
    ]
    assert topology.watchers == INSTANCE.sentinels
    assert topology.shape == "sentinel master mymaster"


def test_a_primary_that_is_not_a_declared_node_is_refused() -> None:
    with pytest.raises(EngineRejected, match="not a node of instance"):
        topology_of(INSTANCE, SentinelView("s1", "10.9.9.9:6379", (A, B, C)), "mymaster")


def test_undeclared_replicas_take_the_primary_login_and_unlisted_nodes_stay() -> None:
    topology = topology_of(INSTANCE, SentinelView("s1", B, (A, "127.0.0.1:7009")), "mymaster")
    found = {n.endpoint: n for n in topology.nodes}
    assert set(found) == {A, B, C, "127.0.0.1:7009"}
    assert found["127.0.0.1:7009"].address.username == "kt_admin"
    assert found["127.0.0.1:7009"].role is NodeRole.REPLICA
    assert found[C].role is NodeRole.REPLICA  # declared, not listed: still changed


def snapshot(**data: object) -> CredentialSnapshot:
    return CredentialSnapshot(account="default", data={"passwords": [], **data})


def labels(primary: CredentialSnapshot) -> list[str]:
    topology = topology_of(INSTANCE, view(B), "mymaster")
    snapshots = {A: snapshot(masterauth="old"), B: primary, C: snapshot(masterauth="old")}
    plan = build_plan(RedisEngine(), topology, Change("default", Secret("new")), snapshots)
    return [f"{s.label} {s.endpoint}" for s in plan.steps]


def test_a_watched_primary_without_masterauth_gets_one() -> None:
    assert labels(snapshot(**{STAGED: True})) == [
        "sentinels follow a rollback 127.0.0.1:26379, 127.0.0.1:26380",
        f"set password {B}",
        f"set password {A}",
        f"set password {C}",
        f"masterauth for a failover {B}",
        f"drop the old passwords, replicas log in again {B}",
        "sentinels 127.0.0.1:26379, 127.0.0.1:26380",
    ]


def test_a_promoted_replica_is_finished_like_a_staged_primary() -> None:
    # Snapshotted as a replica logging in with the account, then promoted by a failover.
    steps = labels(snapshot(masterauth="old"))
    assert f"drop the old passwords, replicas log in again {B}" in steps
    assert f"masterauth for a failover {B}" not in steps
