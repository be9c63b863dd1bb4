"""Redis change plans: discover an instance's topology and build the steps of a password change.

Discovery never trusts the inventory's order. With sentinels, every sentinel is asked which
node is the master now and which are its replicas, and the answer most of them give is planned
from (``keyturn.engines.redis_sentinel_discovery``), so a reset after a failover writes the new
primary first. Without, every declared node is asked its ``ROLE``; a replica names its master,
and each master heads a shard. A Redis Cluster is read from any seed node that answers
(``keyturn.engines.redis_cluster``). Nodes discovered but not declared (a replica a sentinel
knows, a cluster's other nodes) are administered with the login of a declared node.

The plan, per shard, is the order that never breaks replication
(``keyturn.engines.redis_replication``): when replicas log in with the account (the primary's
snapshot says so, or it was snapshotted as a replica logging in with it before a failover
promoted it), the primary first adds the new password beside the old, each replica switches
(password and ``masterauth``), then the primary drops the old passwords and every replica must
log in again; otherwise each node simply gets the new password. Under Sentinel every node may
become a replica, so a primary without ``masterauth`` gets one too. Sentinels that log in with
the account get the new ``auth-pass`` last. Every step's undo restores its node's snapshot;
every data node is checked by a fresh login.

An overlap rotation's ``ADD`` gives every node the new password beside the old ones (``ACL
SETUSER u >new``, no ``resetpass``; replicas' ``masterauth`` and the sentinels' ``auth-pass``
follow, since the primary accepts both by then) and drops nothing; its checks log in with the
new password and prove the previous hashes are still held. ``KEEP_ONLY`` is a reset to the
kept password (``resetpass`` and ``>keep`` in one ``ACL SETUSER``, staged through replicas as
above) whose checks prove it is the only one left. Imports: ``keyturn.core``,
``keyturn.engines`` and redis-py (through the engine's modules).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from keyturn.core.engine_ports import CredentialSnapshot
from keyturn.core.errors import EngineRejected, InternalError
from keyturn.core.model import Instance, Node, NodeAddress, NodeRole
from keyturn.core.plans import Change, ChangeMode, ChangePlan, Check, PlanStep, Topology
from keyturn.engines import redis_topology
from keyturn.engines.admin_pool import pool_key
from keyturn.engines.redis_acl import text
from keyturn.engines.redis_admins import RedisAdmin, cmd, persist

if TYPE_CHECKING:
    from keyturn.engines.redis import RedisEngine

#: The snapshot field that says replicas log in to this node with the account.
STAGED = "staged"


def clone(template: Node, endpoint: str, ordinal: int, role: NodeRole, shard: str) -> Node:
    """A node keyturn did not have declared, administered with ``template``'s login."""
    host, _, port = endpoint.rpartition(":")
    address: NodeAddress = replace(template.address, host=host.strip("[]"), port=int(port))
    return replace(template, ordinal=ordinal, address=address, role=role, shard=shard)


async def discover(engine: RedisEngine, instance: Instance) -> Topology:
    if instance.cluster:
        from keyturn.engines.redis_cluster import discover_cluster

        return await discover_cluster(engine, instance)
    if instance.sentinels:
        from keyturn.engines.redis_sentinel_discovery import discover_from_sentinels

        return await discover_from_sentinels(engine, instance)
    return await _from_roles(engine, instance)


def master_named(reply: Any) -> str:
    """The ``host:port`` of the master a ``ROLE`` reply names ("" for a master)."""
    if text(reply[0]) in ("slave", "replica"):
        return f"{text(reply[1])}:{int(reply[2])}"
    return ""


async def _from_roles(engine: RedisEngine, instance: Instance) -> Topology:
    """Ask every declared node its ``ROLE`` (unless a reset's probe has just read it:
    ``keyturn.engines.probed_roles``); replicas name their master."""
    masters: dict[str, str] = {}
    for node in instance.nodes:

        async def role(admin: RedisAdmin) -> str:
            return master_named(await cmd(admin.client, "ROLE"))

        probed = engine.probed.take(pool_key(node))
        masters[node.endpoint] = (
            probed if probed is not None else await engine.admins.run(node, "ROLE", role)
        )
    nodes: list[Node] = []
    known = {n.endpoint: n for n in instance.nodes}
    extra = max((n.ordinal for n in instance.nodes), default=0) + 1
    for node in instance.nodes:
        master = masters[node.endpoint]
        if not master:
            nodes.append(replace(node, role=NodeRole.PRIMARY, shard=node.endpoint))
            continue
        nodes.append(replace(node, role=NodeRole.REPLICA, shard=master))
        if master not in known and master not in masters:
            # A primary the inventory does not name: it still must change first.
            nodes.append(clone(node, master, extra, NodeRole.PRIMARY, master))
            masters[master] = ""
            extra += 1
    if not any(n.role is NodeRole.PRIMARY for n in nodes):
        raise EngineRejected(f"instance {instance.id}: no node is a primary")
    shape = "standalone" if len(nodes) == 1 else "replicated"
    return Topology(nodes=ordered(nodes), watchers=instance.sentinels, shape=shape)


def ordered(nodes: Sequence[Node]) -> tuple[Node, ...]:
    """Primaries first (in shard order), then replicas."""
    return tuple(sorted(nodes, key=lambda n: (n.role is not NodeRole.PRIMARY, n.shard, n.ordinal)))


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True, slots=True)
class SetPassword:
    """The new password (or password-free) on one node; undo restores its snapshot."""

    engine: RedisEngine
    node: Node
    change: Change
    snapshot: CredentialSnapshot
    label: str = "set password"

    @property
    def endpoint(self) -> str:
        return self.node.endpoint

    async def apply(self) -> str:
        if self.change.password is None:
            result = await self.engine.set_password_free(self.node, self.change.account)
        elif self.change.mode is ChangeMode.ADD:
            result = await self.engine.add_password(
                self.node, self.change.account, self.change.password
            )
        else:
            result = await self.engine.set_password(
                self.node, self.change.account, self.change.password
            )
        return result.note

    async def undo(self) -> None:
        await self.engine.restore(self.node, self.snapshot)


@dataclass(frozen=True, slots=True)
class FailoverLogin:
    """A Sentinel-watched primary whose replicas log in with the account, but which has no
    ``masterauth`` yet: it gets the new password as ``masterauth`` (persisted), so that it
    still replicates once a failover made it a replica. Undo clears it again, as it was."""

    engine: RedisEngine
    node: Node
    change: Change
    label: str = "masterauth for a failover"

    @property
    def endpoint(self) -> str:
        return self.node.endpoint

    async def apply(self) -> str:
        return await self._set(self.change.password.reveal() if self.change.password else "")

    async def undo(self) -> None:
        await self._set("")

    async def _set(self, value: str) -> str:
        async def op(admin: RedisAdmin) -> str:
            await cmd(admin.client, "CONFIG", "SET", "masterauth", value)
            return (await persist(self.node, admin, config=True)).note

        return await self.engine.admins.run(self.node, "masterauth", op)


@dataclass(frozen=True, slots=True)
class FinishStaged:
    """A shard whose replicas log in with the account: the primary keeps only the new
    password, the replication links are cut, every replica must log in again."""

    engine: RedisEngine
    primary: Node
    replicas: tuple[Node, ...]
    change: Change
    snapshot: CredentialSnapshot
    label: str = "drop the old passwords, replicas log in again"

    @property
    def endpoint(self) -> str:
        return self.primary.endpoint

    async def apply(self) -> str:
        nodes = [self.primary, *self.replicas]
        await redis_topology.settle(
            self.engine.admins, nodes, self.change.account, self.change.password
        )
        return ""

    async def undo(self) -> None:
        await self.engine.restore(self.primary, self.snapshot)


@dataclass(frozen=True, slots=True)
class SwitchSentinels:
    """The sentinels' new ``auth-pass``, when they log in with the account: the plan's last
    step. Its undo is ``RestoreSentinels``'s, which runs after the nodes are restored."""

    engine: RedisEngine
    watchers: tuple[Node, ...]
    nodes: tuple[Node, ...]
    change: Change
    label: str = "sentinels"

    @property
    def endpoint(self) -> str:
        return ", ".join(w.endpoint for w in self.watchers)

    async def apply(self) -> str:
        await redis_topology.update_watchers(
            self.engine.admins, self.watchers, self.nodes, self.change.account, self.change.password
        )
        return ""

    async def undo(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class RestoreSentinels:
    """The plan's first step, so that its undo comes last: a sentinel can only log in with
    its previous ``auth-pass`` again once the nodes have their previous password back."""

    engine: RedisEngine
    watchers: tuple[Node, ...]
    nodes: tuple[Node, ...]
    change: Change
    snapshots: Mapping[str, CredentialSnapshot]
    label: str = "sentinels follow a rollback"

    @property
    def endpoint(self) -> str:
        return ", ".join(w.endpoint for w in self.watchers)

    async def apply(self) -> str:
        return ""

    async def undo(self) -> None:
        await redis_topology.restore_watchers(
            self.engine.admins, self.watchers, self.nodes, self.change.account, self.snapshots
        )


@dataclass(frozen=True, slots=True)
class LoginCheck:
    """A fresh login with the new credential on one node, and nothing else accepted."""

    engine: RedisEngine
    node: Node
    change: Change

    @property
    def endpoint(self) -> str:
        return self.node.endpoint

    async def verify(self) -> None:
        await self.engine.verify(self.node, self.change.account, self.change.password)


@dataclass(frozen=True, slots=True)
class AddedCheck:
    """After an ``ADD``: a fresh login with the new password, and the old ones still held."""

    engine: RedisEngine
    node: Node
    change: Change
    snapshot: CredentialSnapshot

    @property
    def endpoint(self) -> str:
        return self.node.endpoint

    async def verify(self) -> None:
        if self.change.password is None:
            raise InternalError("an overlap needs a password")
        await self.engine.verify_added(
            self.node, self.change.account, self.change.password, self.snapshot
        )


def build_plan(
    engine: RedisEngine,
    topology: Topology,
    change: Change,
    snapshots: Mapping[str, CredentialSnapshot],
) -> ChangePlan:
    steps: list[PlanStep] = []
    ordered = tuple(topology.nodes)
    if topology.watchers:
        steps.append(RestoreSentinels(engine, topology.watchers, ordered, change, dict(snapshots)))

    def snapshot(node: Node) -> CredentialSnapshot:
        found = snapshots.get(node.endpoint)
        if found is None:
            raise InternalError(f"no snapshot of {node.endpoint} to plan a change with")
        return found

    for members in topology.shards().values():
        primary, replicas = members[0], tuple(members[1:])
        head = snapshot(primary).data
        # Replicas log in to the primary with the account (its snapshot saw them), or the
        # primary was snapshotted as a replica logging in with it, before a failover promoted
        # it: its replicas (the old primary among them) log in with the same account.
        staged = change.password is not None and bool(head.get(STAGED) or "masterauth" in head)
        adding = change.mode is ChangeMode.ADD
        steps += [SetPassword(engine, node, change, snapshot(node)) for node in members]
        if topology.watchers and staged and head.get(STAGED) and "masterauth" not in head:
            # Sentinel may make this primary a replica at any time: it must log in to the node
            # promoted then, whose account holds only the new password.
            steps.append(FailoverLogin(engine, primary, change))
        if staged and replicas and not adding:
            steps.append(FinishStaged(engine, primary, replicas, change, snapshot(primary)))
    if topology.watchers:
        steps.append(SwitchSentinels(engine, topology.watchers, ordered, change))
    checks: list[Check] = [
        AddedCheck(engine, node, change, snapshot(node))
        if change.mode is ChangeMode.ADD
        else LoginCheck(engine, node, change)
        for node in topology.nodes
    ]
    return ChangePlan(
        topology=topology,
        steps=tuple(steps),
        checks=tuple(checks),
        snapshot_keys=tuple(n.endpoint for n in topology.nodes),
    )
