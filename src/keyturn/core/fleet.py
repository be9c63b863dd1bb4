"""Fleet rotation as a durable job: its selector, options, states, waves and failure threshold.

A job rotates one account on each selected instance (a **target**) in waves: wave 0 is the
canary (``canary`` targets), then every wave is twice the size of the one before, so a fleet of
10,000 with a canary of 10 takes 10 waves. A wave starts only when the one before has ended;
within a wave at most ``max_in_flight`` changes run at once. The job pauses by itself once the
failed targets pass the threshold (a count, or a percentage of the targets finished so far) and
waits for ``resume`` (which retries the failed ones) or ``abort``. Every change of a target is
an ordinary durable reset task (``keyturn.core.tasks``) whose id the target row holds, or, when
the instance account has a managed secret, that secret's rotation flow (its id on the row).
Instances are selected by tenant, product, id glob, region and labels (all must match). These
are pure values and arithmetic; ``FleetRepo`` is the store port the service drives jobs through.
"""

from __future__ import annotations

import enum
import fnmatch
import json
import re
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

from keyturn.core.audit import AuditEvent, AuditOutcome
from keyturn.core.cluster import Fence
from keyturn.core.errors import InvalidParameterValue
from keyturn.core.model import EngineKind, Product, check_labels
from keyturn.core.secrets import Secret

#: Bounds on what a client may ask for (every client integer is bounded).
MAX_CANARY: Final = 10_000
MAX_IN_FLIGHT: Final = 1_000
MAX_GLOB: Final = 200
#: Growth factor of wave sizes after the canary.
WAVE_GROWTH: Final = 2
_JOB_ID = re.compile(r"^fj-[0-9a-f]{12}$")


class JobState(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    ABORTED = "aborted"
    DONE = "done"

    @property
    def final(self) -> bool:
        return self in (JobState.ABORTED, JobState.DONE)


class TargetState(enum.StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in-flight"
    SUCCEEDED = "succeeded"
    #: Refused before anything changed (engine down, account missing...).
    FAILED = "failed"
    #: The change started and was undone: the old password is still the one.
    ROLLED_BACK = "rolled-back"

    @property
    def unsuccessful(self) -> bool:
        return self in (TargetState.FAILED, TargetState.ROLLED_BACK)


def check_job_id(job_id: str) -> str:
    if not _JOB_ID.match(job_id):
        raise InvalidParameterValue("a fleet job id looks like fj- and 12 hex digits")
    return job_id


@dataclass(frozen=True, slots=True)
class Threshold:
    """Pause once failures pass ``count`` (absolute) or ``percent`` of the finished targets."""

    count: int | None = None
    percent: float | None = None

    @classmethod
    def parse(cls, text: str) -> Threshold:
        """``"5"`` (more than 5 failures) or ``"2.5%"`` (more than 2.5 % of finished)."""
        raw = text.strip()
        try:
            if raw.endswith("%"):
                percent = float(raw[:-1])
                if not 0 <= percent <= 100:
                    raise ValueError
                return cls(percent=percent)
            count = int(raw)
            if not 0 <= count <= 10_000_000:
                raise ValueError
            return cls(count=count)
        except ValueError:
            raise InvalidParameterValue(
                "the failure threshold is a count (0 or more) or a percentage like 5%"
            ) from None

    def tripped(self, failures: int, finished: int) -> bool:
        """Whether ``failures`` among ``finished`` targets pass the threshold."""
        if self.count is not None:
            return failures > self.count
        if self.percent is not None and finished > 0:
            # Integer arithmetic: 5% of 200 is exactly 10, so the 11th failure trips it.
            return failures * 10_000 > round(self.percent * 100) * finished
        return False

    def __str__(self) -> str:
        if self.percent is not None:
            return f"{self.percent:g}%"
        return str(self.count)


def wave_of(position: int, canary: int, growth: int = WAVE_GROWTH) -> int:
    """The wave of the target at ``position`` (0-based) in selection order: wave 0 holds the
    first ``canary``, wave k the next ``canary * growth**k``."""
    if canary < 1:
        raise ValueError("the canary wave holds at least one target")
    wave, start, size = 0, 0, canary
    while position >= start + size:
        start += size
        wave += 1
        size *= growth
    return wave


def wave_sizes(total: int, canary: int, growth: int = WAVE_GROWTH) -> list[int]:
    """The size of each wave for ``total`` targets (the last one holds what is left)."""
    sizes: list[int] = []
    size = canary
    while total > 0:
        sizes.append(min(size, total))
        total -= size
        size *= growth
    return sizes


@dataclass(frozen=True, slots=True, kw_only=True)
class Selector:
    """Which instances and accounts a job rotates. ``accounts`` maps an engine to the account
    rotated on its instances (default: Redis ``default``, the instance password); a selected
    instance whose engine has no account named is refused at start."""

    tenant_id: str
    product: Product | None = None
    instances: str | None = None
    region: str | None = None
    accounts: Mapping[EngineKind, str] = field(default_factory=dict)
    #: ``--label key=value``: an instance is selected only if it has every one of them.
    labels: tuple[tuple[str, str], ...] = ()

    def matches_id(self, instance_id: str) -> bool:
        return self.instances is None or fnmatch.fnmatchcase(instance_id, self.instances)

    def matches_labels(self, labels: tuple[tuple[str, str], ...]) -> bool:
        return set(self.labels) <= set(labels)

    def account_for(self, engine: EngineKind) -> str | None:
        if engine in self.accounts:
            return self.accounts[engine]
        return "default" if engine is EngineKind.REDIS else None

    def to_json(self) -> str:
        return json.dumps(
            {
                "tenant": self.tenant_id,
                "product": None if self.product is None else self.product.value,
                "instances": self.instances,
                "region": self.region,
                "accounts": {str(k): v for k, v in self.accounts.items()},
                "labels": dict(self.labels),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Selector:
        data: dict[str, Any] = json.loads(text)
        product = data.get("product")
        return cls(
            tenant_id=data["tenant"],
            product=None if product is None else Product(product),
            instances=data.get("instances"),
            region=data.get("region"),
            accounts={EngineKind(k): v for k, v in (data.get("accounts") or {}).items()},
            labels=tuple(sorted((data.get("labels") or {}).items())),
        )


def parse_labels(values: list[str]) -> tuple[tuple[str, str], ...]:
    """``--label`` values, ``KEY=VALUE`` each (all must match), checked like instance labels;
    the same key twice is refused (no instance has two values for it)."""
    pairs: dict[str, str] = {}
    for value in values:
        key, equals, wanted = value.partition("=")
        if not equals:
            raise InvalidParameterValue("a label selector is KEY=VALUE")
        if key in pairs:
            raise InvalidParameterValue(f"label {key[:63]!r} is selected twice")
        pairs[key] = wanted
    return check_labels(pairs)


def parse_accounts(values: list[str]) -> dict[EngineKind, str]:
    """``--account`` values: ``NAME`` for every engine, or ``ENGINE:NAME`` (``redis:app``,
    ``postgres:app``, ``mysql:app@%``) for one."""
    found: dict[EngineKind, str] = {}
    for value in values:
        head, colon, tail = value.partition(":")
        if colon and head in {e.value for e in EngineKind}:
            engines, name = [EngineKind(head)], tail
        else:
            engines, name = list(EngineKind), value
        if not name or len(name) > 200:
            raise InvalidParameterValue("an account name is 1-200 characters")
        for engine in engines:
            found[engine] = name
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetOptions:
    canary: int = 1
    max_in_flight: int = 8
    stop_after: Threshold = Threshold(count=0)
    #: The job is written paused: its targets can be reviewed (``rotate status``) before a
    #: ``resume`` lets it run. Not kept: it only says how the job starts.
    paused: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.canary <= MAX_CANARY:
            raise InvalidParameterValue(f"--canary is 1-{MAX_CANARY}")
        if not 1 <= self.max_in_flight <= MAX_IN_FLIGHT:
            raise InvalidParameterValue(f"--max-in-flight is 1-{MAX_IN_FLIGHT}")

    def to_json(self) -> str:
        return json.dumps(
            {
                "canary": self.canary,
                "max_in_flight": self.max_in_flight,
                "stop_after": str(self.stop_after),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> FleetOptions:
        data: dict[str, Any] = json.loads(text)
        return cls(
            canary=int(data["canary"]),
            max_in_flight=int(data["max_in_flight"]),
            stop_after=Threshold.parse(str(data["stop_after"])),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class NewTarget:
    instance_id: str
    product: Product
    account: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetTarget:
    job_id: str
    seq: int
    instance_id: str
    product: Product
    account: str
    wave: int
    state: TargetState
    reason: str = ""
    task_id: int | None = None
    attempts: int = 0
    #: Where the new password went (a secret's reference), when it was delivered.
    delivered_to: str = ""
    #: The secret rotation flow this attempt rotates through (its account has a managed
    #: secret); written before the flow starts, so a restart follows it instead of a second.
    flow_id: str | None = None

    def request_id(self) -> str:
        """The request id of this attempt's task: how a restart finds a task that was created
        just before its id could be recorded."""
        return f"fleet:{self.job_id}:{self.seq}:{self.attempts}"

    def audit_event(
        self,
        tenant_id: str,
        outcome: AuditOutcome,
        *,
        at: datetime,
        task_id: int | None = None,
        error_code: str = "",
    ) -> AuditEvent:
        """The audit record of this attempt's change (``fleet:RotatePassword``), by the job's
        key id ``fleet:<job id>``."""
        return AuditEvent(
            at=at,
            tenant_id=tenant_id,
            key_id=f"fleet:{self.job_id}",
            source_ip="",
            user_agent="keyturn fleet",
            vendor="fleet",
            action="fleet:RotatePassword",
            neutral_action="reset_password",
            resource=f"{self.instance_id}/{self.account}",
            outcome=outcome,
            error_code=error_code,
            request_id=self.request_id(),
            task_id="" if task_id is None else str(task_id),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetCounts:
    total: int = 0
    pending: int = 0
    in_flight: int = 0
    succeeded: int = 0
    failed: int = 0
    rolled_back: int = 0

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.rolled_back

    @property
    def failures(self) -> int:
        return self.failed + self.rolled_back

    @classmethod
    def of(cls, by_state: Mapping[TargetState, int]) -> FleetCounts:
        return cls(
            total=sum(by_state.values()),
            pending=by_state.get(TargetState.PENDING, 0),
            in_flight=by_state.get(TargetState.IN_FLIGHT, 0),
            succeeded=by_state.get(TargetState.SUCCEEDED, 0),
            failed=by_state.get(TargetState.FAILED, 0),
            rolled_back=by_state.get(TargetState.ROLLED_BACK, 0),
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "total": self.total,
            "pending": self.pending,
            "in_flight": self.in_flight,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "rolled_back": self.rolled_back,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetJob:
    id: str
    tenant_id: str
    selector: Selector
    options: FleetOptions
    state: JobState
    reason: str
    created_at: datetime
    updated_at: datetime
    counts: FleetCounts = FleetCounts()
    waves: int = 0
    owner: str | None = None
    fence: int = 0
    lease_until: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskEnd:
    """What a target's task came to, as the store has it."""

    task_id: int
    final: bool
    succeeded: bool
    started: bool
    message: str
    error_code: str = ""


class FleetRepo(Protocol):
    """Fleet jobs and their targets in the store."""

    async def create_job(
        self, job_id: str, selector: Selector, options: FleetOptions, targets: list[NewTarget]
    ) -> FleetJob: ...

    async def get_job(self, job_id: str, tenant_id: str | None = None) -> FleetJob: ...

    async def list_jobs(self, tenant_id: str | None, limit: int) -> list[FleetJob]: ...

    async def set_state(
        self, job_id: str, state: JobState, reason: str, *, expect: tuple[JobState, ...]
    ) -> FleetJob:
        """Move the job; ``Conflict`` if its state is not one of ``expect``."""
        ...

    async def retry_unsuccessful(self, job_id: str) -> int:
        """Failed and rolled-back targets back to pending (a resume); how many."""
        ...

    async def claim_job(self, node_id: str, lease: float, skip: list[str]) -> FleetJob | None: ...

    async def renew_job(self, fence: Fence, job_id: str, lease: float) -> JobState:
        """Extend the lease; the job's state. ``LeaseLost`` if another node holds it."""
        ...

    async def release_job(self, fence: Fence, job_id: str) -> None: ...

    async def next_pending(self, job_id: str, wave: int, limit: int) -> list[FleetTarget]: ...

    async def lowest_open_wave(self, job_id: str) -> int | None:
        """The lowest wave with a pending or in-flight target; None when all are finished."""
        ...

    async def in_flight(self, job_id: str) -> list[FleetTarget]: ...

    async def mark_in_flight(
        self, fence: Fence, target: FleetTarget, password: Secret, *, flow_id: str | None = None
    ) -> FleetTarget:
        """Take ``target`` (pending) for a new attempt: in flight, attempt counted, the new
        password sealed on the row, no task yet; ``flow_id``: the secret rotation flow the
        attempt is about to start (recorded first, so a restart follows that flow)."""
        ...

    async def secret_for(self, tenant_id: str, instance_id: str, account: str) -> str | None:
        """The name of the tenant's managed secret of that instance account, if any."""
        ...

    async def record_task(self, fence: Fence, target: FleetTarget, task_id: int) -> None: ...

    async def finish_target(
        self,
        fence: Fence | None,
        target: FleetTarget,
        state: TargetState,
        reason: str,
        *,
        delivered_to: str = "",
    ) -> None:
        """End an attempt; the sealed password is kept only for a succeeded target that was
        not delivered elsewhere. Inside ``writes_together`` it is durable when the unit is
        left (with the outcome's audit record written in the same unit)."""
        ...

    def writes_together(self) -> AbstractAsyncContextManager[None]:
        """A unit of work on the store's database, as ``Store.writes_together``."""
        ...

    async def find_task(self, target: FleetTarget) -> int | None:
        """The task of ``target``'s current attempt, by its request id, if one was created."""
        ...

    async def task_ends(self, task_ids: list[int]) -> dict[int, TaskEnd]: ...

    async def target_password(self, target: FleetTarget) -> Secret | None: ...

    async def targets(self, job_id: str, *, after_seq: int, limit: int) -> list[FleetTarget]:
        """A page of the job's targets in selection order."""
        ...
