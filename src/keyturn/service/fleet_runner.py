"""Driving fleet jobs: the node that holds a job's lease runs its waves.

``FleetDriver`` looks for a running job nobody drives (about every second; at start also the
ones this node drove before a restart) and claims it: the job row's lease, fenced like a
task's, so exactly one node drives a job and a node that lost it can no longer write about it.
Driving a job repeats: renew the lease (which also reads the state, so ``pause`` and ``abort``
from any node are seen within a beat), settle targets whose tasks ended, check the failure
threshold (tripped: the job pauses itself), and start more targets of the lowest open wave, at
most ``max_in_flight`` at once and at most the vendor's rate for the tenant
(``RateLimiter``, shared with the API calls). A wave starts only when the one before it ended.

Each change is an ordinary durable reset task (``Resets``), so the worker, its leases and its
crash recovery carry it. For no change to happen twice, a target is first marked in flight
(with its new password sealed and its attempt's request id), and its task's id is written
before the task's run starts; a driver that takes a job over adopts every in-flight target's
task, by id or else by request id, and a target whose task was never created is simply started
again. When a job stops running (paused, aborted) its driver waits for the changes in flight,
then lets the job go. Passwords come from the product's rules (``generate``). A target whose
instance account has a managed secret (issue 16) rotates through the secret's rotation flow
instead (``SecretDelivery``): the flow's id is written on the target row before the flow
starts, the flow is followed to its end like a task, and a driver that takes the job over
follows the same flow (or starts the target again if the flow never came to exist); the new
password is then the secret's ``ACSCurrent`` and is not kept on the row. Any other succeeded
target's password stays sealed on its row for ``rotate status --show-passwords``. Once a
target ended, its instance's pooled admin sessions are closed (``Release``), so what a node
holds for a job is bounded by the changes in flight, not by the size of the fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Final

from keyturn.core.audit import AuditOutcome
from keyturn.core.background import keep, stop
from keyturn.core.cluster import Fence, LeasePolicy
from keyturn.core.errors import Conflict, DomainError, LeaseLost, RequestThrottled
from keyturn.core.fleet import FleetJob, FleetRepo, FleetTarget, JobState, TargetState
from keyturn.core.model import Product
from keyturn.core.passwords import generate
from keyturn.core.ports import AuditLog, Clock
from keyturn.core.secrets import Secret
from keyturn.core.tasks import Task
from keyturn.service.context import Caller
from keyturn.service.fleet_delivery import Release, SecretDelivery
from keyturn.service.operator import PASSWORD_POLICIES
from keyturn.service.ratelimit import RateLimiter
from keyturn.service.resets import Resets

log = logging.getLogger(__name__)

#: The vendor action whose documented rate a fleet change of each product takes from.
RATE_ACTIONS: Final = {
    Product.TENCENT_REDIS: "redis:ResetPassword",
    Product.TENCENT_POSTGRES: "postgres:ResetAccountPassword",
    Product.TENCENT_TDMYSQL: "tdmysql:ResetUserPassword",
    Product.ALIBABA_KVSTORE: "kvstore:ResetAccountPassword",
    Product.HUAWEI_DCS: "dcs:ResetInstancePassword",
}
#: Seconds between two rounds of a job's loop (task ends are read each round).
ROUND: Final = 0.05


class FleetDriver:
    """Claim and drive fleet jobs on this node."""

    def __init__(
        self,
        repo: FleetRepo,
        resets: Resets,
        rates: RateLimiter,
        node_id: str,
        policy: LeasePolicy,
        *,
        secrets: SecretDelivery | None = None,
        release: Release | None = None,
        audit: AuditLog | None = None,
        clock: Clock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._repo = repo
        self._audit = audit
        self._clock = clock
        self._release = release
        self._resets = resets
        self._rates = rates
        self._node_id = node_id
        self._policy = policy
        self._secrets = secrets
        self._monotonic = monotonic
        self._driving: dict[str, asyncio.Task[None]] = {}
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop = asyncio.create_task(self._claim_forever(), name="fleet-claimer")

    async def stop(self) -> None:
        await stop(self._loop)
        self._loop = None
        for job in list(self._driving.values()):
            job.cancel()
        await asyncio.gather(*self._driving.values(), return_exceptions=True)

    def driving(self) -> list[str]:
        return list(self._driving)

    async def claim_once(self) -> str | None:
        """Claim one running job nobody drives and drive it; its id."""
        job = await self._repo.claim_job(self._node_id, self._policy.lease, self.driving())
        if job is None:
            return None
        log.info("driving fleet job %s (fence %d)", job.id, job.fence)
        run = _JobRun(self, job)
        task = asyncio.create_task(run.drive(), name=f"fleet-{job.id}")
        self._driving[job.id] = task
        task.add_done_callback(lambda _: self._driving.pop(job.id, None))
        return job.id

    async def _claim_forever(self) -> None:
        while True:
            try:
                while await self.claim_once() is not None:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("fleet job claim failed: %s", exc)
            await asyncio.sleep(self._policy.claim_every)


class _JobRun:
    """One claimed job, driven until it stops running and nothing is in flight."""

    def __init__(self, driver: FleetDriver, job: FleetJob) -> None:
        self.d = driver
        self.job = job
        self.fence = Fence(driver._node_id, job.fence)
        self.in_flight: dict[int, FleetTarget] = {}
        self.starting: set[asyncio.Task[None]] = set()
        #: Targets a start is under way for (not yet in flight in the store).
        self.claimed: set[int] = set()
        self.renewed = driver._monotonic()
        self.state = job.state
        self.lost = False
        #: A target failed since the threshold was last checked (checked at the start too).
        self.failed_since_check = True
        #: Targets in flight whose secret rotation flow exists: followed, not their task.
        self.following: set[int] = set()

    async def drive(self) -> None:
        repo = self.d._repo
        try:
            await self._adopt()
            while True:
                if self.lost:
                    raise LeaseLost(f"fleet job {self.job.id} is driven by another node now")
                await self._renew_if_due()
                await self._settle()
                if self.state is JobState.RUNNING and self.failed_since_check:
                    await self._check_threshold()
                if self.state is JobState.RUNNING:
                    await self._start_more()
                if self.state is not JobState.RUNNING and not self.in_flight and not self.starting:
                    break
                await asyncio.sleep(ROUND)
            await repo.release_job(self.fence, self.job.id)
            log.info("fleet job %s: %s", self.job.id, self.state)
        except LeaseLost as exc:
            log.warning("fleet job %s: %s", self.job.id, exc.message)
        except asyncio.CancelledError:
            for task in self.starting:
                task.cancel()
            # Let the job go at once for the next node (or this one's next start).
            with contextlib.suppress(Exception):
                await asyncio.shield(repo.release_job(self.fence, self.job.id))
            raise
        except Exception:
            log.exception("fleet job %s: driving stopped; the job resumes later", self.job.id)

    async def _adopt(self) -> None:
        """Targets left in flight by an earlier driver: their task, by id or request id, or
        back to pending when none was created (nothing was changed)."""
        for target in await self.d._repo.in_flight(self.job.id):
            if target.flow_id is not None:
                await self._adopt_flow(target, target.flow_id)
                continue
            task_id = target.task_id
            if task_id is None:
                task_id = await self.d._repo.find_task(target)
                if task_id is None:
                    await self.d._repo.finish_target(self.fence, target, TargetState.PENDING, "")
                    continue
                await self.d._repo.record_task(self.fence, target, task_id)
            self.in_flight[target.seq] = _with_task(target, task_id)

    async def _adopt_flow(self, target: FleetTarget, flow_id: str) -> None:
        """A target rotating through a secret's flow: follow that flow, or start the target
        again when the flow never came to exist (nothing was changed)."""
        secrets = self.d._secrets
        if secrets is None or await secrets.follow(self.job.tenant_id, flow_id) is None:
            if secrets is None:
                log.warning("fleet job %s: no secrets here to follow flow %s", self.job.id, flow_id)
            await self.d._repo.finish_target(self.fence, target, TargetState.PENDING, "")
            return
        self.in_flight[target.seq] = target
        self.following.add(target.seq)

    async def _renew_if_due(self) -> None:
        now = self.d._monotonic()
        # At least every second: the renewal also reads the state (pause, abort elsewhere).
        if now - self.renewed < min(self.d._policy.renew_every, 1.0):
            return
        self.state = await self.d._repo.renew_job(self.fence, self.job.id, self.d._policy.lease)
        self.renewed = now

    def _trusted(self) -> bool:
        return self.d._monotonic() - self.renewed < self.d._policy.trust_window

    async def _settle(self) -> None:
        await self._settle_flows()
        waiting = {
            t.task_id: t
            for t in self.in_flight.values()
            if t.task_id is not None and t.seq not in self.following
        }
        if not waiting:
            return
        ends = await self.d._repo.task_ends(list(waiting))
        for task_id, end in ends.items():
            if not end.final:
                continue
            target = waiting[task_id]
            if end.succeeded:
                await self._ended(target, task_id, succeeded=True)
            else:
                state = TargetState.ROLLED_BACK if end.started else TargetState.FAILED
                await self._ended(
                    target, task_id, state=state, reason=end.message, code=end.error_code
                )

    async def _settle_flows(self) -> None:
        """Targets rotating through a secret's flow end as their flow does."""
        secrets = self.d._secrets
        if secrets is None:
            return
        for seq in list(self.following):
            target = self.in_flight[seq]
            if target.flow_id is None:
                continue
            try:
                end = await secrets.follow(self.job.tenant_id, target.flow_id)
            except DomainError as exc:
                # E.g. the secret was deleted meanwhile: the target waits for an operator.
                log.warning("fleet job %s: flow %s: %s", self.job.id, target.flow_id, exc.message)
                continue
            if end is None or not end.final:
                continue
            self.following.discard(seq)
            if end.succeeded:
                await self._ended(
                    target, end.task_id, succeeded=True, delivered_to=end.delivered_to
                )
                continue
            started = False
            if end.task_id is not None:
                ends = await self.d._repo.task_ends([end.task_id])
                started = end.task_id in ends and ends[end.task_id].started
            state = TargetState.ROLLED_BACK if started else TargetState.FAILED
            await self._ended(
                target, end.task_id, state=state, reason=end.message, code=end.error_code
            )

    async def _ended(
        self,
        target: FleetTarget,
        task_id: int | None,
        *,
        succeeded: bool = False,
        state: TargetState = TargetState.FAILED,
        reason: str = "",
        code: str = "",
        delivered_to: str = "",
    ) -> None:
        if task_id is not None and target.task_id is None:
            await self.d._repo.record_task(self.fence, target, task_id)
        # The target's end and its outcome's record in one unit of work (one commit): as
        # two commits, a crash between them left an ended target without the record, and
        # the restart never writes it (the target is no longer in flight).
        async with self.d._repo.writes_together():
            if succeeded:
                await self.d._repo.finish_target(
                    self.fence, target, TargetState.SUCCEEDED, "", delivered_to=delivered_to
                )
                await self._audit(target, AuditOutcome.SUCCEEDED, task_id=task_id)
            else:
                await self.d._repo.finish_target(self.fence, target, state, reason)
                self.failed_since_check = True
                await self._audit(target, AuditOutcome.FAILED, task_id=task_id, error_code=code)
        del self.in_flight[target.seq]
        if self.d._release is not None:
            await self.d._release(self.job.tenant_id, target.instance_id)

    async def _check_threshold(self) -> None:
        self.failed_since_check = False
        job = await self.d._repo.get_job(self.job.id)
        counts = job.counts
        if job.options.stop_after.tripped(counts.failures, counts.finished):
            reason = (
                f"{counts.failures} of {counts.finished} finished targets failed, past "
                f"--stop-after-failures {job.options.stop_after}: resume or abort"
            )
            self.job = await self.d._repo.set_state(
                self.job.id, JobState.PAUSED, reason, expect=(JobState.RUNNING,)
            )
            self.state = JobState.PAUSED
            log.warning("fleet job %s paused: %s", self.job.id, reason)
        elif job.state is not JobState.RUNNING:
            self.state = job.state

    async def _start_more(self) -> None:
        room = self.job.options.max_in_flight - len(set(self.in_flight) | self.claimed)
        if room <= 0 or not self._trusted():
            return
        wave = await self.d._repo.lowest_open_wave(self.job.id)
        if wave is None:
            if not self.in_flight and not self.starting:
                self.job = await self.d._repo.set_state(
                    self.job.id, JobState.DONE, "", expect=(JobState.RUNNING,)
                )
                self.state = JobState.DONE
            return
        for target in await self.d._repo.next_pending(self.job.id, wave, room):
            if target.seq in self.in_flight or target.seq in self.claimed:
                continue
            # Claimed here before anything awaits, so the next round cannot pick it again.
            self.claimed.add(target.seq)
            task = asyncio.create_task(self._start(target))
            keep(task, self.starting)
            task.add_done_callback(self._unclaim(target.seq))

    async def _audit(
        self,
        target: FleetTarget,
        outcome: AuditOutcome,
        *,
        task_id: int | None = None,
        error_code: str = "",
    ) -> None:
        """One audit record of a target's change (``fleet:RotatePassword``): ``started``
        before it is made (a change whose record cannot be written is not made), then its
        outcome."""
        audit, clock = self.d._audit, self.d._clock
        if audit is None or clock is None:
            return
        await audit.append(
            target.audit_event(
                self.job.tenant_id,
                outcome,
                at=clock.now(),
                task_id=task_id,
                error_code=error_code,
            )
        )

    def _unclaim(self, seq: int) -> Callable[[asyncio.Task[None]], None]:
        return lambda _: self.claimed.discard(seq)

    async def _start(self, target: FleetTarget) -> None:
        repo = self.d._repo
        policy = PASSWORD_POLICIES[target.product]
        password = Secret(generate(policy))
        secrets = self.d._secrets
        secret_name: str | None = None
        if secrets is not None:
            try:
                secret_name = await repo.secret_for(
                    self.job.tenant_id, target.instance_id, target.account
                )
            except DomainError as exc:
                # Nothing changed yet: the target stays pending for a later round.
                log.warning("fleet job %s: target %d: %s", self.job.id, target.seq, exc.message)
                return
        flow_id = secrets.new_flow_id() if secrets is not None and secret_name else None
        try:
            target = await repo.mark_in_flight(self.fence, target, password, flow_id=flow_id)
        except LeaseLost:
            self.lost = True
            return
        except Conflict:
            return  # no longer pending (another round or node took it): nothing to do
        self.in_flight[target.seq] = target
        caller = Caller(
            tenant_id=self.job.tenant_id,
            key_id=f"fleet:{self.job.id}",
            request_id=target.request_id(),
        )

        async def record(task: Task) -> None:
            await repo.record_task(self.fence, target, task.id)
            self.in_flight[target.seq] = _with_task(target, task.id)

        try:
            await self._audit(target, AuditOutcome.STARTED)
            await self._take_rate(target.product)
            if secrets is not None and secret_name is not None and flow_id is not None:
                await secrets.launch(self.job.tenant_id, secret_name, password, flow_id)
                self.following.add(target.seq)
                return
            await self.d._resets.reset_password(
                caller,
                product=target.product,
                instance_id=target.instance_id,
                account=target.account,
                password=password,
                policy=policy,
                on_queued=record,
            )
        except LeaseLost:
            self.lost = True
        except Exception as exc:
            if self.in_flight.get(target.seq, target).task_id is not None:
                return  # the task exists and runs: its end settles the target
            if secrets is not None and flow_id is not None:
                with contextlib.suppress(DomainError):
                    if await secrets.follow(self.job.tenant_id, flow_id) is not None:
                        self.following.add(target.seq)
                        return  # the flow exists: its end settles the target
            reason = exc.message if isinstance(exc, DomainError) else "internal error"
            code = exc.code if isinstance(exc, DomainError) else "InternalError"
            if not isinstance(exc, DomainError):
                log.exception("fleet job %s: target %d", self.job.id, target.seq)
            try:
                async with repo.writes_together():  # one commit, as in ``_ended``
                    await repo.finish_target(self.fence, target, TargetState.FAILED, reason)
                    with contextlib.suppress(DomainError):
                        await self._audit(target, AuditOutcome.FAILED, error_code=code)
            except LeaseLost:
                self.lost = True
                return
            self.in_flight.pop(target.seq, None)
            self.failed_since_check = True

    async def _take_rate(self, product: Product) -> None:
        while True:
            try:
                await self.d._rates.take(self.job.tenant_id, RATE_ACTIONS[product], mutating=True)
                return
            except RequestThrottled:
                await asyncio.sleep(1.0 - (time.time() % 1.0) + 0.001)


def _with_task(target: FleetTarget, task_id: int) -> FleetTarget:
    return replace(target, task_id=task_id)
