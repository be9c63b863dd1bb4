"""Fleet rotation jobs: start one from a selector, and ``status``, ``pause``, ``resume`` and
``abort`` it from any node (the job's state is the store's, never a node's memory).

``start`` selects the tenant's instances (product, id glob, region, labels) from the store's
id, region and label listing, without reading nodes or secrets, names the account rotated on
each (``--account`` per engine; Redis defaults to ``default``, the instance password), and
writes the job with every target in one transaction; a node's ``FleetDriver``
(``keyturn.service.fleet_runner``) then drives it. ``resume`` puts failed and rolled-back
targets back to pending before the job runs again, so the threshold counts afresh and nothing
is skipped. ``outcomes`` reads the
targets a page at a time; passwords are unsealed only when asked for. ``steer_audited`` is
the CLI's steering, audited like the admin API's.
"""

from __future__ import annotations

import getpass
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Final

from keyturn.core.audit import AuditEvent, AuditOutcome
from keyturn.core.errors import Conflict, DomainError, InvalidParameterValue, NotFound
from keyturn.core.fleet import (
    MAX_GLOB,
    FleetJob,
    FleetOptions,
    FleetRepo,
    FleetTarget,
    JobState,
    NewTarget,
    Selector,
    check_job_id,
)
from keyturn.core.model import Product
from keyturn.core.ports import AuditLog, Clock
from keyturn.core.secrets import Secret
from keyturn.core.store_ports import Store

#: Targets read per page when outcomes are listed.
OUTCOME_PAGE: Final = 500
#: Jobs a listing answers at most.
MAX_LISTED: Final = 100


@dataclass(frozen=True, slots=True)
class Outcome:
    """One target as reported: its password only when asked for and still kept."""

    target: FleetTarget
    password: Secret | None = None


class FleetJobs:
    """Start and steer fleet jobs."""

    def __init__(self, store: Store, repo: FleetRepo) -> None:
        self._store = store
        self._repo = repo

    async def start(self, selector: Selector, options: FleetOptions) -> FleetJob:
        """Select the targets and write the job (``running``); ``InvalidParameterValue`` if
        nothing matches or an engine has no account to rotate."""
        if selector.instances is not None and len(selector.instances) > MAX_GLOB:
            raise InvalidParameterValue(f"the instance pattern is at most {MAX_GLOB} characters")
        if selector.tenant_id not in await self._store.tenant_sources():
            raise NotFound(f"tenant {selector.tenant_id!r} does not exist")
        products = [selector.product] if selector.product is not None else list(Product)
        targets: list[NewTarget] = []
        for product in products:
            found = await self._store.instance_labels(selector.tenant_id, product=product.value)
            for instance_id, region, labels in found:
                if selector.region is not None and region != selector.region:
                    continue
                if not selector.matches_id(instance_id) or not selector.matches_labels(labels):
                    continue
                account = selector.account_for(product.engine)
                if account is None:
                    raise InvalidParameterValue(
                        f"instance {instance_id} is {product.engine}: name its account with "
                        f"--account {product.engine}:NAME"
                    )
                targets.append(NewTarget(instance_id=instance_id, product=product, account=account))
        if not targets:
            raise InvalidParameterValue("no instance matches the selection")
        job_id = f"fj-{secrets.token_hex(6)}"
        return await self._repo.create_job(job_id, selector, options, targets)

    async def status(self, job_id: str, tenant_id: str | None = None) -> FleetJob:
        return await self._repo.get_job(check_job_id(job_id), tenant_id)

    async def jobs(self, tenant_id: str | None, limit: int = 20) -> list[FleetJob]:
        return await self._repo.list_jobs(tenant_id, max(1, min(limit, MAX_LISTED)))

    async def pause(self, job_id: str, tenant_id: str | None = None) -> FleetJob:
        """No new change starts (changes in flight end as their tasks do); pausing a paused
        job keeps it paused, with the operator's reason."""
        await self.status(job_id, tenant_id)
        return await self._repo.set_state(
            job_id,
            JobState.PAUSED,
            "paused by an operator",
            expect=(JobState.RUNNING, JobState.PAUSED),
        )

    async def resume(self, job_id: str, tenant_id: str | None = None) -> FleetJob:
        """Failed and rolled-back targets go back to pending, then the job runs again."""
        job = await self.status(job_id, tenant_id)
        if job.state.final:
            raise Conflict(f"fleet job {job_id} is {job.state}")
        await self._repo.retry_unsuccessful(job_id)
        return await self._repo.set_state(
            job_id, JobState.RUNNING, "", expect=(JobState.PAUSED, JobState.RUNNING)
        )

    async def abort(self, job_id: str, tenant_id: str | None = None) -> FleetJob:
        """No new change starts; changes in flight end as their tasks do."""
        await self.status(job_id, tenant_id)
        return await self._repo.set_state(
            job_id,
            JobState.ABORTED,
            "aborted by an operator",
            expect=(JobState.RUNNING, JobState.PAUSED),
        )

    async def targets(self, job_id: str, *, after_seq: int, limit: int) -> list[FleetTarget]:
        """A page of targets in selection order (no passwords)."""
        return await self._repo.targets(job_id, after_seq=after_seq, limit=min(limit, 1000))

    async def outcomes(
        self, job_id: str, *, tenant_id: str | None = None, passwords: bool = False
    ) -> AsyncIterator[Outcome]:
        """Every target in selection order, a page at a time."""
        await self.status(job_id, tenant_id)
        after = -1
        while True:
            page = await self._repo.targets(job_id, after_seq=after, limit=OUTCOME_PAGE)
            if not page:
                return
            for target in page:
                secret = await self._repo.target_password(target) if passwords else None
                yield Outcome(target, secret)
            after = page[-1].seq


async def steer_audited(
    fleet: FleetJobs,
    audit: AuditLog,
    clock: Clock,
    verb: str,
    operation: str,
    job_id: str,
    *,
    actor: str = "",
) -> FleetJob:
    """``pause``/``resume``/``abort`` from the CLI, audited as the admin API audits the same
    call (``admin:<operation>`` on ``fleet-jobs/<id>/<verb>``): a ``started`` record before the
    change (a change whose record cannot be written is not made), then its outcome. The key id
    names the operating-system user (``cli:<user>``)."""
    job = await fleet.status(job_id)
    event = AuditEvent(
        at=clock.now(),
        tenant_id=job.tenant_id,
        key_id=f"cli:{actor or _user()}"[:128],
        source_ip="",
        user_agent="keyturn cli",
        vendor="admin",
        action=f"admin:{operation}",
        neutral_action="",
        resource=f"fleet-jobs/{job.id}/{verb}",
        outcome=AuditOutcome.STARTED,
        request_id=f"cli-{secrets.token_hex(8)}",
    )
    await audit.append(event)
    try:
        steered: FleetJob = await getattr(fleet, verb)(job.id)
    except DomainError as exc:
        await audit.append(replace(event, outcome=AuditOutcome.FAILED, error_code=exc.code))
        raise
    await audit.append(replace(event, at=clock.now(), outcome=AuditOutcome.SUCCEEDED))
    return steered


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
