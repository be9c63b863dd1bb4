"""Redis Cluster discovery: every node of every shard, from any seed node that answers.

``CLUSTER NODES`` (every Redis Cluster version has it) lists each node with its address, flags
and, for a replica, the id of its master; a shard is a master and its replicas, named by the
master's node id. Nodes the seed marks ``noaddr`` or ``handshake`` are not (yet) part of the
cluster and are left out; a node marked ``fail`` is kept, because it still holds the account
and must change when it comes back (the worker waits for it, bounded, like any node that is
down). A node that has never met another one reports no address for itself: it is the seed,
at the address keyturn reached it on. A node added to the cluster later is simply found at the
next task, and a failover shows as a shard headed by its new master. ACL and CONFIG are per
node in a cluster too, so the plan is the replicated one, shard by shard; discovered nodes are
administered with the seed's login, so every node must have keyturn's admin user. Seeds that
do not answer are skipped; if none answers, the instance is unavailable (retried within the
task's deadline), and if one answered with a refusal (not a cluster, no right to read it), the
discovery fails at once. Imports: ``keyturn.core``, ``keyturn.engines`` and redis-py (through
the engine's modules).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from keyturn.core.errors import EngineRejected, EngineUnavailable
from keyturn.core.model import Instance, Node, NodeRole
from keyturn.core.plans import Topology
from keyturn.engines.redis_acl import text
from keyturn.engines.redis_admins import RedisAdmin, cmd

if TYPE_CHECKING:
    from keyturn.engines.redis import RedisEngine

#: Flags of entries that are not (yet, or any more) members with an address.
_NOT_MEMBERS = frozenset({"noaddr", "handshake"})


@dataclass(frozen=True, slots=True)
class ClusterNode:
    node_id: str
    endpoint: str
    primary: bool
    #: The node id of the shard's master (its own for a master).
    shard: str
    failed: bool


def parse_cluster_nodes(reply: str, seed_host: str = "") -> list[ClusterNode]:
    """The members of a ``CLUSTER NODES`` reply read from a seed reached at ``seed_host``."""
    found: list[ClusterNode] = []
    for line in reply.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        node_id, address, flags = fields[0], fields[1], set(fields[2].split(","))
        if flags & _NOT_MEMBERS:
            continue
        # ``host:port@bus-port[,hostname]``, as ``NodeAddress.endpoint`` spells it (an IPv6
        # host without brackets).
        endpoint = address.split("@", 1)[0].split(",", 1)[0]
        if endpoint.startswith(":") and "myself" in flags and seed_host:
            endpoint = seed_host + endpoint
        if endpoint.startswith(":") or not endpoint.rpartition(":")[2].isdigit():
            continue
        primary = "master" in flags
        found.append(
            ClusterNode(
                node_id=node_id,
                endpoint=endpoint,
                primary=primary,
                shard=node_id if primary else fields[3],
                failed="fail" in flags or "fail?" in flags,
            )
        )
    return found


async def discover_cluster(engine: RedisEngine, instance: Instance) -> Topology:
    failures: list[str] = []
    refused = False
    for seed in instance.nodes:

        async def read(admin: RedisAdmin) -> str:
            return text(await cmd(admin.client, "CLUSTER", "NODES"))

        try:
            reply = await engine.admins.run(seed, "CLUSTER NODES", read)
        except EngineUnavailable as exc:
            failures.append(exc.message)
            continue
        except EngineRejected as exc:
            refused = True
            failures.append(exc.message)
            continue
        members = parse_cluster_nodes(reply, seed.address.host)
        if not members:
            raise EngineRejected(f"{seed.endpoint} reports no cluster members")
        return Topology(
            nodes=_nodes(instance, seed, members),
            watchers=(),
            shape=f"cluster of {sum(1 for m in members if m.primary)} shards",
        )
    summary = "; ".join(failures)
    if refused:
        raise EngineRejected(f"no seed node of the cluster could be read: {summary}")
    raise EngineUnavailable(f"no seed node of the cluster answered: {summary}")


def _nodes(instance: Instance, seed: Node, members: list[ClusterNode]) -> tuple[Node, ...]:
    from keyturn.engines.redis_plan import clone

    declared = {n.endpoint: n for n in instance.nodes}
    extra = max((n.ordinal for n in instance.nodes), default=0) + 1
    nodes: list[Node] = []
    for member in sorted(members, key=lambda m: (not m.primary, m.shard, m.endpoint)):
        role = NodeRole.PRIMARY if member.primary else NodeRole.REPLICA
        known = declared.get(member.endpoint)
        if known is not None:
            nodes.append(replace(known, role=role, shard=member.shard))
        else:
            nodes.append(clone(seed, member.endpoint, extra, role, member.shard))
            extra += 1
    return tuple(nodes)
