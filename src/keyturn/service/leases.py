"""This node's task leases: what it holds, their renewal, and when it may still act.

``Leases`` keeps one ``TaskLease`` per task this node runs, keyed by task id, with the fence it
claimed the task with (``keyturn.core.cluster``). ``renew`` extends them all in one store
transaction; a lease the store did not renew (another node claimed the task since) is marked
lost at once. A lease is **trusted** only while its last successful renewal is younger than
the trust window (half the lease): the renewal's start is what counts, since the store set
the lease's end no earlier than that. The plan runner checks ``TaskLease.check`` before every
engine operation, so a node cut off from the store stops touching engines at half the lease,
well before another node may take the task over at the full lease; every store write of the
task names the fence, so a node that was taken over cannot change the task either.
``UNLEASED`` stands for a run outside any cluster (tools and unit tests): always trusted,
never fenced.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final, Protocol

from keyturn.core.cluster import Fence, LeasePolicy
from keyturn.core.errors import LeaseLost
from keyturn.core.store_ports import ClusterRepo

log = logging.getLogger(__name__)


class Held(Protocol):
    """What a run needs of its lease: the fence its writes name, and a check before it acts."""

    @property
    def fence(self) -> Fence | None: ...

    def check(self) -> None:
        """Raise ``LeaseLost`` unless this node may still act on the task."""
        ...


class _Unleased:
    fence: Fence | None = None

    def check(self) -> None:
        return None


UNLEASED: Final[Held] = _Unleased()


class TaskLease:
    """One task's lease as this node holds it."""

    def __init__(
        self, task_id: int, fence: Fence, trust_window: float, monotonic: Callable[[], float]
    ) -> None:
        self.task_id = task_id
        self._fence = fence
        self._trust_window = trust_window
        self._monotonic = monotonic
        self._renewed = monotonic()
        self.lost = False

    def __repr__(self) -> str:
        return f"TaskLease(task={self.task_id}, fence={self._fence.token}, lost={self.lost})"

    @property
    def fence(self) -> Fence:
        return self._fence

    def renewed(self, at: float) -> None:
        self._renewed = max(self._renewed, at)

    def trusted(self) -> bool:
        return not self.lost and self._monotonic() - self._renewed < self._trust_window

    def check(self) -> None:
        if self.lost:
            raise LeaseLost(f"task {self.task_id} was claimed by another node")
        if not self.trusted():
            raise LeaseLost(
                f"the lease on task {self.task_id} could not be renewed within "
                f"{self._trust_window:g} s"
            )
        # At debug level every engine operation of a leased run is logged with its fence: the
        # cluster fault suite reads these lines to prove no two nodes ever acted on one task
        # at once.
        log.debug("acting on task %d under fence %d", self.task_id, self._fence.token)


class Leases:
    """The leases this node holds, and their renewal."""

    def __init__(
        self,
        store: ClusterRepo,
        node_id: str,
        policy: LeasePolicy,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.node_id = node_id
        self.policy = policy
        self._monotonic = monotonic
        self._held: dict[int, TaskLease] = {}

    def hold(self, task_id: int, fence: Fence) -> TaskLease:
        lease = TaskLease(task_id, fence, self.policy.trust_window, self._monotonic)
        self._held[task_id] = lease
        return lease

    def drop(self, lease: TaskLease) -> None:
        if self._held.get(lease.task_id) is lease:
            del self._held[lease.task_id]

    def held(self) -> list[int]:
        return list(self._held)

    async def renew(self) -> list[int]:
        """Renew every lease held; the ids of those found lost. A store error propagates (the
        leases simply age until the trust window closes)."""
        held = dict(self._held)
        if not held:
            return []
        started = self._monotonic()
        fences = {task_id: lease.fence.token for task_id, lease in held.items()}
        renewed = await self.store.renew_leases(self.node_id, fences, self.policy.lease)
        lost: list[int] = []
        for task_id, lease in held.items():
            if task_id in renewed:
                lease.renewed(started)
            elif self._held.get(task_id) is not lease:
                # Its task ended (and dropped the lease) while the renewal waited for the
                # store's writer: not renewed because no longer active, not lost.
                continue
            elif not lease.lost:
                lease.lost = True
                lost.append(task_id)
                log.warning("lost the lease on task %d to another node", task_id)
        return lost
