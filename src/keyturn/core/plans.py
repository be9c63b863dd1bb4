"""Change plans: what an engine builds for an instance's current topology, and the worker runs.

A password change on a real instance is more than one command: a Redis primary whose replicas
log in with the account must hold both passwords until every replica switched, sentinels need
the new ``auth-pass``, a PostgreSQL standby only replays what its primary wrote, a Redis
Cluster has a primary and replicas per shard. Each engine knows its own; the worker knows none
of it. So an engine first discovers the ``Topology`` (which node is primary now, its replicas,
shards, watchers), then builds a ``ChangePlan``: ordered ``PlanStep``s that each apply one
change and know how to undo it, and ``Check``s that prove the result by logging in. The worker
applies the steps in order, runs every check, and on any failure undoes the applied steps in
reverse. Pure: the protocols are implemented by the engines.

A change has a ``ChangeMode``: a reset replaces every credential of the account; an overlap
rotation first ``ADD``s the new password beside the current one (both log in during a grace
period) and later keeps only the new one (``KEEP_ONLY``). Engines with one password per
account (PostgreSQL) overlap with a twin login role instead (``Engine.overlap_partner``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from keyturn.core.model import Node, NodeRole
from keyturn.core.secrets import Secret


class ChangeMode(enum.StrEnum):
    """How a change treats the account's other credentials."""

    #: The password replaces every credential the account had (a reset).
    REPLACE = "replace"
    #: The password is added; the current one keeps working (an overlap rotation begins).
    #: On an engine with one password per account the change names the twin role, whose
    #: password is replaced while the other role keeps its own.
    ADD = "add"
    #: Only this password stays; every other one is dropped (the overlap ends). On an engine
    #: with twin roles the other role's password is expired (``VALID UNTIL``).
    KEEP_ONLY = "keep_only"


@dataclass(frozen=True, slots=True)
class Change:
    """What a task does to one account: a new password, or none (password-free), and how the
    account's other credentials are treated."""

    account: str
    password: Secret | None
    mode: ChangeMode = ChangeMode.REPLACE


@dataclass(frozen=True, slots=True, kw_only=True)
class Topology:
    """An instance as discovery found it: its data nodes with their roles (primaries first,
    in shard order), and the watchers (sentinels) that must follow a change."""

    nodes: tuple[Node, ...]
    watchers: tuple[Node, ...] = ()
    #: How it was found (for task messages and logs): "standalone", "replicated",
    #: "sentinel mymaster", "cluster of 3 shards", ...
    shape: str = ""

    @property
    def primaries(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role is NodeRole.PRIMARY)

    @property
    def replicas(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role is NodeRole.REPLICA)

    def signature(self) -> tuple[tuple[str, str, str], ...]:
        """What identifies this topology: each node's endpoint, role and shard. Two
        discoveries with different signatures mean the instance moved (a failover)."""
        return tuple(sorted((n.endpoint, str(n.role), n.shard) for n in self.nodes))

    def shards(self) -> dict[str, list[Node]]:
        """Data nodes by shard, each list primary first."""
        found: dict[str, list[Node]] = {}
        for node in self.nodes:
            found.setdefault(node.shard, []).append(node)
        for members in found.values():
            members.sort(key=lambda n: n.role is not NodeRole.PRIMARY)
        return found


class PlanStep(Protocol):
    """One change on one node (or on the watchers): applied, and undone on rollback."""

    @property
    def label(self) -> str:
        """What the step does, for task messages ("set password", "sentinels"...)."""
        ...

    @property
    def endpoint(self) -> str:
        """The node it acts on (``host:port``), or a summary for steps on several."""
        ...

    async def apply(self) -> str:
        """Make the change; a note for the task (e.g. "not persisted"), or ""."""
        ...

    async def undo(self) -> None:
        """Put back what was there before (from the snapshots the plan was built with)."""
        ...


class Check(Protocol):
    """A proof that one node holds the new credential: a fresh login, and the old one
    refused."""

    @property
    def endpoint(self) -> str: ...

    async def verify(self) -> None:
        """Raise ``VerificationFailed`` (or an ``EngineError``) unless the change holds."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangePlan:
    """A change for one topology: steps in the order they must be applied, and checks."""

    topology: Topology
    steps: tuple[PlanStep, ...]
    checks: tuple[Check, ...]
    #: Snapshot keys (node endpoints) the plan's undo relies on.
    snapshot_keys: tuple[str, ...] = field(default=())


def node_by_endpoint(nodes: Sequence[Node]) -> Mapping[str, Node]:
    return {node.endpoint: node for node in nodes}
