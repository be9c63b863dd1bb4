"""This node in a cluster of keyturn nodes on one store: its id, heartbeat, lease renewal and
the claimer that takes over tasks of nodes that died.

``ClusterNode.start`` writes the node's heartbeat row, resumes the tasks this node may claim
at once (its own from before a restart, released ones, lapsed ones) and starts two loops:

- **renewal**, every quarter of the lease: renew every lease held (``Leases.renew``) and,
  every few seconds, the heartbeat. A renewal that fails (the store unreachable) is retried at
  the next beat; meanwhile the leases age and, past the trust window, the runs stop acting on
  engines (``keyturn.service.leases``).
- **claimer**, about every second: claim unfinished tasks whose lease lapsed (their node died,
  or was cut off from the store) and resume them here as crash recovery does.

``stop`` ends both loops and removes the heartbeat row; the worker's drain has released the
leases of parked tasks by then. The loops take their clock and sleep as parameters, so unit
tests drive them without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable

from keyturn.core.background import stop
from keyturn.core.cluster import NodeRecord
from keyturn.core.errors import DomainError
from keyturn.core.ports import Clock
from keyturn.core.store_ports import ClusterRepo
from keyturn.service.leases import Leases
from keyturn.service.worker import TaskWorker

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


def default_node_id() -> str:
    """``hostname-pid-random``: unique per process, so a restarted process is a new node (its
    predecessor's tasks are taken over once their leases lapse, or at once if it stopped
    cleanly). Set ``KEYTURN_NODE_ID`` to keep one id across restarts."""
    host = socket.gethostname().split(".")[0] or "node"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


class ClusterNode:
    """Heartbeat, lease renewal and the claimer of one node."""

    def __init__(
        self,
        store: ClusterRepo,
        worker: TaskWorker,
        leases: Leases,
        clock: Clock,
        *,
        address: str = "",
        version: str = "",
        sleep: Sleep = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._worker = worker
        self._leases = leases
        self._policy = leases.policy
        self._sleep = sleep
        self._monotonic = monotonic
        self.record = NodeRecord(
            id=leases.node_id,
            started_at=clock.now(),
            heartbeat_at=clock.now(),
            address=address,
            version=version,
        )
        self._loops: list[asyncio.Task[None]] = []
        self._last_heartbeat = -float("inf")
        self._started = False

    @property
    def node_id(self) -> str:
        return self.record.id

    async def start(self) -> int:
        """Register the node, resume the tasks it may claim now, start the loops; how many
        tasks were resumed."""
        self._started = True
        await self._store.heartbeat(self.record)
        self._last_heartbeat = self._monotonic()
        resumed = await self._worker.recover()
        self._loops = [
            asyncio.create_task(self._forever(self.renew_once, self._policy.renew_every)),
            asyncio.create_task(self._forever(self.claim_once, self._policy.claim_every)),
        ]
        log.info(
            "node %s up: task lease %gs, %d task(s) resumed",
            self.node_id,
            self._policy.lease,
            resumed,
        )
        return resumed

    async def stop(self) -> None:
        """End the loops and remove the node's row (best effort: a node that cannot reach
        the store is forgotten a day after its last heartbeat). Idempotent."""
        if not self._started:
            return
        self._started = False
        await stop(*self._loops)
        self._loops = []
        try:
            await self._store.remove_node(self.node_id)
        except DomainError:
            log.warning("could not remove node %s from the store", self.node_id)

    async def renew_once(self) -> None:
        """Renew the leases held, and the heartbeat when it is due."""
        await self._leases.renew()
        if self._monotonic() - self._last_heartbeat >= self._policy.heartbeat_every:
            await self._store.heartbeat(self.record)
            self._last_heartbeat = self._monotonic()

    async def claim_once(self) -> None:
        await self._worker.claim()

    async def _forever(self, beat: Callable[[], Awaitable[None]], every: float) -> None:
        while True:
            await self._sleep(every)
            try:
                await beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The store may be unreachable for a while: try again at the next beat.
                log.warning("%s failed: %s", getattr(beat, "__name__", "beat"), exc)
