"""The rotation scheduler every node runs: due slots fire once, missed windows catch up once.

A tick starts with one cheap indexed read of the cluster's pending work (any unfinished flow,
the earliest slot, the earliest drop: ``SecretRepo.pending_work``), made at every tick and
never cached, so whatever another node changed is seen at the next tick; an idle tick ends
there, and each step below runs only when that read says it is due. Each tick settles
unfinished flows (any node's: a flow follows its task wherever the lease machinery moved it),
then fires the secrets whose ``next_rotation_at`` has come. Firing is the store's
compare-and-set of that value together with the flow's insert (``SecretRepo.start_flow``), so
with N nodes on one store exactly one fires a slot; the others see the slot moved and do
nothing. The state is all in the store, so a restart resumes where the cluster was: a slot that
came due while every node was down is still due, and fires once (the next slot is computed from
*now*, ``keyturn.core.secret_schedule``). A due slot whose window has closed is moved to the
next window opening instead. While another rotation of the same instance account runs, the slot
stays due and fires at a later tick. A failed flow has set ``next_rotation_at`` to its retry
time; the retry is a new flow with a fresh password. Overlap mode's follow-up (drop the
previous password once the overlap ends) is a durable ``drop_old_at`` on the flow, claimed the
same way, and kept pending until the drop's task has succeeded: a node that claimed it queues
the task and holds the claim (renewing it) while the task runs; a drop that could not be
queued, or whose task failed, is tried again after a backoff (5 s doubling, at most 5 minutes;
the count is the flow's ``drop_failures`` in the store, so it holds across nodes and restarts).
A node that stops while holding a claim loses nothing: the claim expires and any node takes the
drop over (a drop queued twice is harmless: it keeps the current password only). A secret with
``drop_old = "when-unused"`` has its old password's sessions looked at every few ticks while
the overlap lasts (``keyturn.service.secret_drops``): once none from before the rotation
remains, the drop is claimed and queued early; at the overlap's end, a secret with
``end_old_sessions`` has the remaining ones ended as the drop is queued.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from keyturn.core.background import stop
from keyturn.core.errors import DomainError, OperationInProgress
from keyturn.core.ports import Clock
from keyturn.core.secret_manager import FlowTrigger, RotationFlow, SecretRecord, SecretRepo
from keyturn.core.secret_schedule import after_success, backoff, catch_up_at
from keyturn.service.secret_drops import OldPasswordUse
from keyturn.service.secret_rotation import Rotator

log = logging.getLogger(__name__)

#: Seconds between ticks (the schedule's resolution).
TICK_EVERY = 1.0
#: How long a node holds an overlap drop it claimed before another may take it over.
DROP_CLAIM = timedelta(seconds=60)
#: When a drop that could not be queued (engine down, a rotation running) or whose task
#: failed is tried again: this, doubling per failed try, at most ``DROP_RETRY_CAP``.
DROP_RETRY = timedelta(seconds=5)
DROP_RETRY_CAP = timedelta(minutes=5)


def drop_backoff(attempt: int) -> timedelta:
    """The wait after the ``attempt``-th failed try of a drop."""
    return min(DROP_RETRY * (1 << min(max(attempt, 1) - 1, 16)), DROP_RETRY_CAP)


@dataclass(slots=True)
class _Drop:
    """A drop this node queued and follows: its flow, its task and the claim it holds."""

    flow: RotationFlow
    task_id: int
    until: datetime


#: A ``when-unused`` flow's sessions are looked at every this many ticks (each look lists
#: the account's sessions on every node of the instance).
UNUSED_TICKS = 5


class SecretScheduler:
    """Fire due rotations; one per node, all sharing the store."""

    def __init__(
        self,
        repo: SecretRepo,
        rotator: Rotator,
        clock: Clock,
        *,
        every: float = TICK_EVERY,
        old_use: OldPasswordUse | None = None,
    ) -> None:
        # ``old_use``: who still uses an overlap's old password (without it, drops happen at
        # the overlap's end only and no session is ended).
        self._old_use = old_use
        self._unused_every = timedelta(seconds=every * UNUSED_TICKS)
        #: When this node last listed the ``when-unused`` flows (they are looked at together).
        self._unused_at: datetime | None = None
        self._repo = repo
        self._rotator = rotator
        self._clock = clock
        self._every = every
        self._loop: asyncio.Task[None] | None = None
        #: The drops whose task this node follows, by flow id.
        self._running: dict[str, _Drop] = {}

    async def tick(self) -> list[str]:
        """One pass: settle flows, fire what is due, run due drops; the flows started.

        It starts with one cheap read of the cluster's pending work (``pending_work``), taken
        afresh at every tick so a secret another node created is seen at the next one; each
        step below runs only when that read says it has something to do."""
        work = await self._repo.pending_work()
        if work.unfinished and await self._rotator.reconcile():
            # An ended flow has set a slot (a retry) or a drop: seen at this tick, not the next.
            work = await self._repo.pending_work()
        now = self._clock.now()
        started: list[str] = []
        if work.rotation_due(now):
            for record in await self._repo.due_secrets(now):
                flow_id = await self._fire(record, now)
                if flow_id:
                    started.append(flow_id)
        await self._drops(now, due=work.drop_due(now))
        if work.drop_old_at is None:
            self._unused_at = None  # no overlap anywhere: nothing to look at
        else:
            await self._unused_drops(now)
        return started

    async def _fire(self, record: SecretRecord, now: datetime) -> str:
        slot = record.next_rotation_at
        if slot is None:
            return ""
        spec = record.spec
        if record.failures == 0 and record.rotate_requested_at is not None:
            trigger = FlowTrigger.MANUAL  # ``rotate-now``: now, whatever the window
        elif record.failures == 0:
            at = catch_up_at(slot, now, begin=spec.begin, window=spec.window)
            if at > now:
                # The window closed while no node fired it: catch up once, at its next opening.
                await self._repo.reschedule(
                    spec.tenant_id, spec.name, expect_next=slot, next_rotation_at=at
                )
                return ""
            trigger = FlowTrigger.SCHEDULE
        else:
            trigger = FlowTrigger.RETRY
        next_at = None
        if record.rotation_enabled and spec.rotation is not None:
            next_at = after_success(record.anchor_at or slot, spec.rotation, now)
        try:
            return await self._rotator.launch(
                record, trigger, expect_next=slot, next_rotation_at=next_at
            )
        except OperationInProgress:
            return ""  # another rotation of the account runs: this slot fires at a later tick
        except DomainError as exc:
            # Not even a flow could start (the instance is gone, the store is down): try
            # again later rather than at every tick.
            log.warning("could not start rotation of %s: %s", spec.name, exc.message)
            retry = now + backoff(record.failures + 1, spec.rotation)
            await self._repo.reschedule(
                spec.tenant_id, spec.name, expect_next=slot, next_rotation_at=retry
            )
            return ""

    async def _drops(self, now: datetime, *, due: bool) -> None:
        if self._running:
            await self._follow_drops(now)
        if not due:
            return
        for flow in await self._repo.due_drops(now):
            if flow.drop_old_at is None or flow.flow_id in self._running:
                continue
            until = now + DROP_CLAIM
            if not await self._repo.claim_drop(flow.flow_id, expect=flow.drop_old_at, until=until):
                continue
            if self._old_use is not None:
                try:
                    await self._old_use.end_at_grace_end(flow)
                except DomainError as exc:
                    # The drop goes ahead: the overlap is over either way.
                    log.warning("could not end the old password's sessions: %s", exc.message)
            try:
                task_id = await self._rotator.drop_previous(flow)
            except DomainError as exc:
                log.warning("could not drop the previous password: %s", exc.message)
                await self._retry_drop(flow, until, now)
                continue
            if task_id is None:  # nothing to drop (a later rotation took over)
                await self._drop_done(flow.flow_id, until)
            else:
                self._running[flow.flow_id] = _Drop(flow, task_id, until)

    async def _follow_drops(self, now: datetime) -> None:
        """End (or retry) the drops whose task ended; renew the claims of the others."""
        for flow_id, drop in list(self._running.items()):
            try:
                ended = await self._rotator.drop_ended(drop.flow, drop.task_id)
            except DomainError as exc:
                # The store is away (or the task is gone): look again next tick; once the
                # claim has expired the drop is let go, to be taken over here or elsewhere.
                log.warning("could not follow a drop: %s", exc.message)
                if drop.until <= now:
                    del self._running[flow_id]
                continue
            if ended is None:
                if drop.until - now < DROP_CLAIM / 2:
                    until = now + DROP_CLAIM
                    if await self._repo.claim_drop(flow_id, expect=drop.until, until=until):
                        drop.until = until
                    else:
                        del self._running[flow_id]  # the claim expired and was taken over
                continue
            del self._running[flow_id]
            if ended:
                await self._drop_done(flow_id, drop.until)
            else:
                log.warning("the previous password's drop failed; it is tried again")
                await self._retry_drop(drop.flow, drop.until, now)

    async def _drop_done(self, flow_id: str, claimed: datetime) -> None:
        await self._repo.claim_drop(flow_id, expect=claimed, until=None)

    async def _retry_drop(self, flow: RotationFlow, claimed: datetime, now: datetime) -> None:
        """Keep the drop pending, due again after a backoff. The count is the flow's in the
        store, as read when this node claimed it (the claim keeps any other node from changing
        it meanwhile), and written with the claim's release: a retry on another node, or after
        a restart, backs off from where the cluster left it."""
        failures = flow.drop_failures + 1
        until = now + drop_backoff(failures)
        await self._repo.claim_drop(flow.flow_id, expect=claimed, until=until, failures=failures)

    async def _unused_drops(self, now: datetime) -> None:
        """Drop early the old passwords of ``when-unused`` secrets nobody uses any more."""
        if self._old_use is None:
            return
        if self._unused_at is not None and now - self._unused_at < self._unused_every:
            return
        self._unused_at = now
        for flow in await self._repo.pending_unused_drops(now):
            due = flow.drop_old_at
            if due is None or flow.flow_id in self._running:
                continue  # its drop is queued and followed here already
            if not await self._old_use.unused(flow):
                continue
            until = now + DROP_CLAIM
            if not await self._repo.claim_drop(flow.flow_id, expect=due, until=until):
                continue  # another node claimed it
            try:
                task_id = await self._rotator.drop_previous(flow)
            except DomainError as exc:
                # Not dropped: back to the overlap's end (a later tick may try again early).
                log.warning("could not drop the previous password early: %s", exc.message)
                await self._repo.claim_drop(flow.flow_id, expect=until, until=due)
                continue
            # Followed to its end like a drop at the overlap's end (``_follow_drops``): the
            # drop stays pending, and is retried, until its task has succeeded.
            if task_id is None:
                await self._drop_done(flow.flow_id, until)
            else:
                self._running[flow.flow_id] = _Drop(flow, task_id, until)
            log.info("old password's drop queued once unused", extra={"flow_id": flow.flow_id})

    def start(self) -> None:
        if self._loop is None:
            self._loop = asyncio.create_task(self._forever())

    async def stop(self) -> None:
        if self._loop is None:
            return
        await stop(self._loop)
        self._loop = None

    async def _forever(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The store may be unreachable for a while: try again at the next tick.
                log.warning("secret schedule tick failed: %s", exc)
