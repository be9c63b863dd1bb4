"""Instance layouts for listings: declared instances from the store alone, Redis Clusters from a
live discovery (per cluster, concurrently), and a cluster that cannot be read has no layout
rather than a wrong one."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from keyturn.core.errors import EngineUnavailable
from keyturn.core.model import EngineKind, Instance, Node, NodeAddress, NodeRole, Product
from keyturn.core.plans import Topology
from keyturn.core.secrets import Secret
from keyturn.service.layouts import Layout, layouts


def node(port: int, role: NodeRole = NodeRole.MEMBER, shard: str = "") -> Node:
    address = NodeAddress(
        engine=EngineKind.REDIS,
        scheme="redis",
        host="127.0.0.1",
        port=port,
        username="kt_admin",
        password=Secret("admin"),
    )
    return Node(instance_id="crs-unit0001", ordinal=port, address=address, role=role, shard=shard)


def instance(instance_id: str, *ports: int, cluster: bool = False) -> Instance:
    return Instance(
        id=instance_id,
        tenant_id="1",
        product=Product.TENCENT_REDIS,
        region="ap-guangzhou",
        nodes=tuple(node(p) for p in ports),
        cluster=cluster,
    )


#: Three shards; the second has two replicas, the third none.
CLUSTER = Topology(
    nodes=(
        node(1, NodeRole.PRIMARY, "a"),
        node(2, NodeRole.PRIMARY, "b"),
        node(3, NodeRole.PRIMARY, "c"),
        node(4, NodeRole.REPLICA, "a"),
        node(5, NodeRole.REPLICA, "b"),
        node(6, NodeRole.REPLICA, "b"),
    ),
    shape="cluster of 3 shards",
)


@dataclass
class Discovering:
    """An engine (and its registry) that only discovers: ``CLUSTER`` for instances it
    reaches, ``EngineUnavailable`` for the others."""

    reachable: set[str]
    asked: list[str] = field(default_factory=list)

    def engine(self, kind: EngineKind) -> Discovering:
        return self

    async def discover(self, instance: Instance) -> Topology:
        self.asked.append(instance.id)
        if instance.id not in self.reachable:
            raise EngineUnavailable("no seed node of the cluster answered")
        return CLUSTER


def test_a_layout_counts_shards_and_the_fewest_replicas() -> None:
    assert Layout.of(CLUSTER) == Layout(shards=3, replicas=0)
    two = replace(CLUSTER, nodes=CLUSTER.nodes[:2] + CLUSTER.nodes[3:5])
    assert Layout.of(two) == Layout(shards=2, replicas=1)


async def test_only_clusters_are_read_and_an_unreadable_one_has_no_layout() -> None:
    engines = Discovering(reachable={"crs-cluster01"})
    found = await layouts(
        engines,  # type: ignore[arg-type]
        [
            instance("crs-plain0001", 1, 2, 3),
            instance("crs-single001", 1),
            instance("crs-cluster01", 1, cluster=True),
            instance("crs-cluster02", 1, cluster=True),
        ],
    )
    assert found == {
        "crs-plain0001": Layout(shards=1, replicas=2),
        "crs-single001": Layout(shards=1, replicas=0),
        "crs-cluster01": Layout(shards=3, replicas=0),
        "crs-cluster02": None,
    }
    assert sorted(engines.asked) == ["crs-cluster01", "crs-cluster02"]
