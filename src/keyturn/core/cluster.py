"""Several keyturn nodes on one store: node records, task leases and fencing tokens.

Every node has an id and a heartbeat row. A node runs a task only while it holds the task's
**lease**: the store row names the owner, the time the lease runs until, and a **fence**, an
integer incremented at every claim. Each task-state write the worker makes names the fence it
claimed with; a write naming an older fence changes nothing and raises ``LeaseLost``, so a node
whose lease lapsed and was taken over can no longer change the task. A lease that lapsed (its
owner died or lost the store) is claimed by another node, which resumes the task as crash
recovery does. ``LeasePolicy`` holds the timings every node derives from the one lease length.
Pure values, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from keyturn.core.tasks import Task, TaskState

#: The default lease length, in seconds.
DEFAULT_LEASE = 10.0


@dataclass(frozen=True, slots=True)
class Fence:
    """What a fenced write names: the owner and the fence it claimed the task with."""

    owner: str
    token: int


@dataclass(frozen=True, slots=True)
class Claimed:
    """A task this node just claimed, with the fence of the claim."""

    task: Task
    fence: Fence


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRecord:
    """A node as its heartbeat row describes it."""

    id: str
    started_at: datetime
    heartbeat_at: datetime
    address: str = ""
    version: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldTask:
    """An unfinished task and the lease on it (``keyturn nodes``)."""

    id: int
    tenant_id: str
    instance_id: str
    state: TaskState
    owner: str | None
    lease_until: datetime | None


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    """The timings derived from the lease length.

    A node renews every ``renew_every`` (a quarter of the lease, so three renewals may fail
    before it lapses); it stops acting on an engine once it has not renewed for
    ``trust_window`` (half the lease), so a node cut off from the store stops well before
    another node may take its tasks over; other nodes look for lapsed leases every
    ``claim_every``."""

    lease: float = DEFAULT_LEASE

    def __post_init__(self) -> None:
        if not self.lease > 0:
            raise ValueError("the task lease must be a number of seconds above 0")

    @property
    def renew_every(self) -> float:
        return self.lease / 4

    @property
    def trust_window(self) -> float:
        return self.lease / 2

    @property
    def claim_every(self) -> float:
        return min(1.0, self.lease / 4)

    @property
    def heartbeat_every(self) -> float:
        return min(2.0, self.renew_every)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeView:
    """A node with the unfinished tasks it holds (``keyturn nodes``); ``node`` None groups
    tasks whose owner has no heartbeat row (stopped, or never claimed)."""

    node: NodeRecord | None
    tasks: tuple[HeldTask, ...]


def nodes_view(nodes: list[NodeRecord], held: list[HeldTask]) -> list[NodeView]:
    """Every node (id order) with its tasks, then the tasks of no listed node, if any."""
    known = {node.id for node in nodes}
    views = [
        NodeView(node=node, tasks=tuple(t for t in held if t.owner == node.id)) for node in nodes
    ]
    orphans = tuple(t for t in held if t.owner not in known)
    if orphans:
        views.append(NodeView(node=None, tasks=orphans))
    return views
