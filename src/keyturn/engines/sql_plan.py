"""Change plans for the SQL engines (PostgreSQL, MySQL/MariaDB): one write on the primary,
checks everywhere.

A role's or user's password lives in the catalog and replicates by itself, so a plan has one
step: the new verifier on the primary, undone by restoring the previous one there. The primary
is discovered, never assumed from the inventory's order: every declared node is asked whether
it is a standby (``pg_is_in_recovery()``) or a replica (replication status), and exactly one
must be neither, so a reset after a switchover (a standby promoted, the old primary demoted or
stopped) writes on the new primary. A node that cannot be reached cannot say what it is (a
stopped old primary may come back still a primary): the discovery fails with
``EngineUnavailable`` and the worker retries it until the task's deadline, writing nothing
meanwhile; two primaries (a split brain) are refused outright. Every node is then checked
by a fresh login (a standby or replica first waits, bounded, until it replayed the change).

An overlap rotation (``ChangeMode``) has the same shape: ``ADD`` puts the new password beside
the current one (a MariaDB authentication chain, MySQL 8 ``RETAIN CURRENT PASSWORD``, or, on
PostgreSQL, the twin role's password) and its checks log in with the new password and prove
that the previous credentials are still held; ``KEEP_ONLY`` leaves only the given password (on
PostgreSQL: the twin's password expires) and its checks prove nothing else is held. Every
step's undo restores the primary's snapshot. Imports: ``keyturn.core`` only; the engines supply
the I/O.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from keyturn.core.engine_ports import ApplyResult, CredentialSnapshot
from keyturn.core.errors import EngineRejected, InternalError
from keyturn.core.model import Instance, Node, NodeRole
from keyturn.core.plans import Change, ChangeMode, ChangePlan, Topology
from keyturn.core.secrets import Secret


class SqlChanges(Protocol):
    """What a SQL engine's plan steps call."""

    async def set_password(self, node: Node, account: str, password: Secret) -> ApplyResult: ...

    async def restore(self, node: Node, snapshot: CredentialSnapshot) -> ApplyResult: ...

    async def verify(self, node: Node, account: str, password: Secret | None) -> None: ...

    async def add_password(self, node: Node, account: str, password: Secret) -> ApplyResult:
        """``password`` beside the account's current credential (the overlap begins)."""
        ...

    async def keep_only(self, node: Node, account: str, password: Secret) -> ApplyResult:
        """Only ``password`` stays (the overlap ends)."""
        ...

    async def verify_overlap(
        self, node: Node, change: Change, snapshot: CredentialSnapshot | None
    ) -> None:
        """After ``ADD``: the new password logs in and what ``snapshot`` held still is; after
        ``KEEP_ONLY``: the password logs in and nothing else is held."""
        ...


async def discover_primary(
    instance: Instance, is_replica: Callable[[Node], Awaitable[bool]]
) -> Topology:
    """The declared nodes with their roles; exactly one primary."""
    nodes = [
        replace(node, role=NodeRole.REPLICA if await is_replica(node) else NodeRole.PRIMARY)
        for node in instance.nodes
    ]
    primaries = [n.endpoint for n in nodes if n.role is NodeRole.PRIMARY]
    if len(primaries) != 1:
        found = ", ".join(primaries) if primaries else "none"
        raise EngineRejected(
            f"instance {instance.id} must have exactly one primary node (found: {found})"
        )
    ordered = sorted(nodes, key=lambda n: (n.role is not NodeRole.PRIMARY, n.ordinal))
    shape = "standalone" if len(nodes) == 1 else f"primary {primaries[0]} with standbys"
    return Topology(nodes=tuple(ordered), shape=shape)


@dataclass(frozen=True, slots=True)
class SetOnPrimary:
    """The new password on the primary; replication carries it to the others."""

    engine: SqlChanges
    node: Node
    change: Change
    snapshot: CredentialSnapshot
    label: str = "set password on the primary"

    @property
    def endpoint(self) -> str:
        return self.node.endpoint

    async def apply(self) -> str:
        password = self.change.password
        if password is None:
            raise InternalError("SQL accounts always have a password")
        account, mode = self.change.account, self.change.mode
        if mode is ChangeMode.ADD:
            result = await self.engine.add_password(self.node, account, password)
        elif mode is ChangeMode.KEEP_ONLY:
            result = await self.engine.keep_only(self.node, account, password)
        else:
            result = await self.engine.set_password(self.node, account, password)
        return result.note

    async def undo(self) -> None:
        await self.engine.restore(self.node, self.snapshot)


@dataclass(frozen=True, slots=True)
class LoginCheck:
    engine: SqlChanges
    node: Node
    change: Change
    #: The primary's snapshot: what an overlap's checks expect still held.
    snapshot: CredentialSnapshot | None = None

    @property
    def endpoint(self) -> str:
        return self.node.endpoint

    async def verify(self) -> None:
        if self.change.mode is ChangeMode.REPLACE:
            await self.engine.verify(self.node, self.change.account, self.change.password)
        else:
            await self.engine.verify_overlap(self.node, self.change, self.snapshot)


def build_plan(
    engine: SqlChanges,
    topology: Topology,
    change: Change,
    snapshots: Mapping[str, CredentialSnapshot],
) -> ChangePlan:
    if len(topology.primaries) != 1:
        raise EngineRejected("the instance's primary is not known: nothing can be written")
    [primary] = topology.primaries
    snapshot = snapshots.get(primary.endpoint)
    if snapshot is None:
        raise InternalError(f"no snapshot of {primary.endpoint} to plan a change with")
    return ChangePlan(
        topology=topology,
        steps=(SetOnPrimary(engine, primary, change, snapshot),),
        checks=tuple(LoginCheck(engine, node, change, snapshot) for node in topology.nodes),
        snapshot_keys=(primary.endpoint,),
    )
