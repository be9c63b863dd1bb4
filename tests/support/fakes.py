"""In-memory stand-ins for unit tests without I/O.

Ports and services: a settable clock, the store's replay memory, rate windows and
wrong-old-password locks (``MemoryRates``, ``MemoryChangeLocks``: the SQL parts' rules), a
gate that lets everything through (and what a dialect tells it of a call), a task-shaped value
for stubbed resets, and ``fake_task`` / ``fake_instance`` / ``fake_flow``: a task, an instance
and a secret's rotation flow as the store would return them.
Engines and stores: ``FakeEngine`` keeps one current password per account and answers
``probe`` and ``password_matches`` after a short ``asyncio.sleep`` (so concurrent callers
really overlap), counting the old passwords it evaluated; ``FakeStore`` holds instances and
answers the reads a use case makes before it queues anything. Anything else they are asked
raises, so a test notices when a use case goes further than it should. They implement the same
ports as the real adapters, so a unit test exercises the real code on either side of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from keyturn.core.engine_ports import EngineInfo
from keyturn.core.errors import AccountNotFound, DomainError, InstanceNotFound
from keyturn.core.model import EngineKind, Instance, Node, NodeAddress, Product
from keyturn.core.secret_manager import FlowState, FlowTrigger, RotationFlow
from keyturn.core.secrets import Secret
from keyturn.core.tasks import Task, TaskKind, TaskState
from keyturn.service.context import Answer, Caller
from keyturn.service.gate import CallInfo
from keyturn.service.replay import ReplayGuard


class FakeClock:
    """A clock that stands still until told to move (UTC); with ``tick`` it moves that many
    seconds before each reading instead (so every stored time differs)."""

    def __init__(self, moment: datetime | None = None, *, tick: float = 0.0) -> None:
        self.moment = moment or datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
        self.tick = timedelta(seconds=tick)

    def now(self) -> datetime:
        self.moment += self.tick
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


def redis_call(action: str = "redis:ResetPassword", *, mutating: bool = True) -> CallInfo:
    """What a dialect tells the gate about a Tencent Redis call (a reset unless told)."""
    return CallInfo(
        vendor="tencent",
        action=action,
        neutral_action="reset_password" if mutating else "",
        mutating=mutating,
        resource_name=lambda region, tenant, instance: (
            f"qcs::redis:{region}:uin/{tenant}:{instance}"
        ),
        instance_id="crs-00000001",
        region="ap-guangzhou",
    )


class WallClock:
    """The real time (for dialect tests whose signatures carry the current time)."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class MemoryReplay:
    """The ``ReplayRepo`` port in a dict (the store's behaviour: no eviction, expiry)."""

    def __init__(self) -> None:
        self.expiry: dict[tuple[str, str], datetime] = {}

    async def remember_nonce(
        self, scope: str, nonce: str, *, expires_at: datetime, now: datetime
    ) -> bool:
        known = self.expiry.get((scope, nonce))
        if known is not None and known > now:
            return False
        self.expiry[(scope, nonce)] = expires_at
        return True

    async def forget_nonce(self, scope: str, nonce: str) -> None:
        self.expiry.pop((scope, nonce), None)

    async def purge_nonces(self, now: datetime) -> int:
        expired = [key for key, until in self.expiry.items() if until <= now]
        for key in expired:
            del self.expiry[key]
        return len(expired)


class MemoryRates:
    """The ``RateRepo`` port in a dict (the store's rule: count while under the limit)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int], int] = {}
        self.writes = 0

    async def count_call(self, tenant_id: str, action: str, second: int, limit: int) -> bool:
        self.writes += 1
        key = (tenant_id, action, second)
        if self.counts.get(key, 0) >= limit:
            return False
        self.counts[key] = self.counts.get(key, 0) + 1
        return True

    async def purge_rate_windows(self, before: int) -> int:
        old = [key for key in self.counts if key[2] < before]
        for key in old:
            del self.counts[key]
        return len(old)


class MemoryChangeLocks:
    """The ``ChangeLockRepo`` port in a dict: ``key`` -> [failures, locked_until]."""

    def __init__(self) -> None:
        self.rows: dict[str, list[Any]] = {}

    async def count_attempt(self, key: str, *, max_failures: int, now: datetime) -> bool:
        row = self.rows.setdefault(key, [0, None])
        if (row[1] is not None and row[1] > now) or row[0] >= max_failures:
            return False
        row[0], row[1] = row[0] + 1, None
        return True

    async def missed_attempt(
        self, key: str, *, max_failures: int, now: datetime, lock_until: datetime
    ) -> int:
        row = self.rows.get(key)
        if row is None:
            return max_failures
        if row[1] is not None and row[1] > now:
            return 0
        if row[0] >= max_failures:
            row[0], row[1] = 0, lock_until
            return 0
        return int(max_failures - row[0])

    async def refund_attempt(self, key: str) -> None:
        row = self.rows.get(key)
        if row is not None and row[0] > 0:
            row[0] -= 1

    async def clear_attempts(self, key: str, *, now: datetime) -> None:
        row = self.rows.get(key)
        if row is not None and (row[1] is None or row[1] <= now):
            del self.rows[key]

    async def locked_until(self, key: str, *, now: datetime) -> datetime | None:
        row = self.rows.get(key)
        return None if row is None or row[1] is None or row[1] <= now else row[1]


def memory_replay_guard(clock: Any) -> ReplayGuard:
    return ReplayGuard(MemoryReplay(), clock)


@dataclass
class PassthroughGate:
    """``Gate`` with nothing to refuse (authorization and audit are tested on their own):
    runs the pipeline's admission check (the replay check), then the action. ``error``, when
    set, is what the gate refuses every call with; refusals before the gate are recorded."""

    error: Exception | None = None
    gated: int = 0
    refusals: list[dict[str, Any]] = field(default_factory=list)

    async def run(
        self,
        caller: Caller,
        info: Any,
        execute: Callable[[Caller], Awaitable[Answer]],
        vendor_code: Callable[[DomainError], str],
        *,
        admission: Any = None,
    ) -> Answer:
        self.gated += 1
        if self.error is not None:
            raise self.error
        if admission is not None:
            await admission.admit()
        return await execute(replace(caller))

    async def rejected(self, caller: Caller, **fields: Any) -> None:
        self.refusals.append({"caller": caller, "tenant": caller.tenant_id, **fields})


@dataclass(frozen=True)
class QueuedTask:
    """What a stubbed reset answers with: a task id."""

    id: int = 7


def fake_task(
    task_id: int = 1,
    *,
    tenant_id: str = "1300000001",
    instance_id: str = "crs-fake0001",
    account: str = "default",
    kind: TaskKind = TaskKind.RESET_PASSWORD,
    state: TaskState = TaskState.PREPARING,
    created_at: datetime = datetime(2026, 1, 1, tzinfo=UTC),
    request_id: str = "r",
    **fields: Any,
) -> Task:
    """A task with no steps and no message (``fields``: any other of ``Task``'s)."""
    return Task(
        id=task_id,
        tenant_id=tenant_id,
        instance_id=instance_id,
        account=account,
        kind=kind,
        state=state,
        message=fields.pop("message", ""),
        request_id=request_id,
        steps=fields.pop("steps", ()),
        created_at=created_at,
        **fields,
    )


def fake_flow(
    flow_id: str,
    *,
    name: str,
    created_at: datetime,
    version_id: str,
    tenant_id: str = "1300000001",
    state: FlowState = FlowState.PENDING,
    trigger: FlowTrigger = FlowTrigger.SCHEDULE,
    account: str = "app",
    **fields: Any,
) -> RotationFlow:
    """A rotation flow of secret ``name`` (``fields``: any other of ``RotationFlow``'s)."""
    return RotationFlow(
        flow_id=flow_id,
        tenant_id=tenant_id,
        name=name,
        state=state,
        trigger=trigger,
        created_at=created_at,
        version_id=version_id,
        account=account,
        **fields,
    )


def fake_instance(
    instance_id: str = "crs-fake0001",
    *,
    tenant_id: str = "1300000001",
    product: Product = Product.ALIBABA_KVSTORE,
    admin: str = "kt_admin",
    allow_admin_reset: bool = False,
    engine: EngineKind = EngineKind.REDIS,
) -> Instance:
    """A one-node instance (Redis unless ``engine`` says otherwise) whose admin login is
    ``admin``."""
    address = NodeAddress(
        engine=engine,
        scheme="redis" if engine is EngineKind.REDIS else engine.value,
        host="127.0.0.1",
        port=6379,
        username=admin,
        password=Secret("admin-password"),
    )
    return Instance(
        id=instance_id,
        tenant_id=tenant_id,
        product=product,
        region="cn-hangzhou",
        nodes=(Node(instance_id=instance_id, ordinal=0, address=address),),
        allow_admin_reset=allow_admin_reset,
    )


@dataclass
class FakeEngine:
    """Accounts: name -> current password; ``superusers`` are reported so by ``probe``."""

    kind: EngineKind = EngineKind.REDIS
    passwords: dict[str, str] = field(default_factory=dict)
    superusers: set[str] = field(default_factory=set)
    delay: float = 0.001
    #: Old passwords ``password_matches`` was asked about, in order.
    evaluated: list[str] = field(default_factory=list)
    #: Accounts ``prepare`` was told a change of, in order.
    prepared: list[str] = field(default_factory=list)

    async def probe(self, node: Node, account: str | None = None) -> EngineInfo:
        await asyncio.sleep(self.delay)
        exists = None if account is None else account in self.passwords
        return EngineInfo(
            version="7.0.15",
            accounts=True,
            password_free=False if exists else None,
            account_exists=exists,
            superuser=None if not exists else account in self.superusers,
        )

    async def password_matches(self, node: Node, account: str, password: Secret) -> bool:
        self.evaluated.append(password.reveal())
        await asyncio.sleep(self.delay)
        if account not in self.passwords:
            raise AccountNotFound()
        return self.passwords[account] == password.reveal()

    def prepare(self, node: Node, account: str, password: Secret) -> None:
        self.prepared.append(account)

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the fake engine was not expected to {name}")


@dataclass
class FakeRegistry:
    driver: FakeEngine

    def engine(self, kind: EngineKind) -> FakeEngine:
        return self.driver


@dataclass
class FakeStore:
    instances: dict[str, Instance] = field(default_factory=dict)

    async def get_instance(self, tenant_id: str, instance_id: str) -> Instance:
        found = self.instances.get(instance_id)
        if found is None or found.tenant_id != tenant_id:
            raise InstanceNotFound()
        return found

    async def active_task(self, instance_id: str, account: str) -> int | None:
        return None

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the fake store was not expected to {name}")


@dataclass
class RecordingMetrics:
    """The metrics port, remembering every recording as ``(recorder, *labels)`` (durations
    left out; ``seconds`` keeps them in the same order)."""

    recorded: list[tuple[str, ...]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def api_call(self, vendor: str, action: str, code: str, seconds: float) -> None:
        self.recorded.append(("api_call", vendor, action, code))
        self.seconds.append(seconds)

    def refused(self, vendor: str, reason: str) -> None:
        self.recorded.append(("refused", vendor, reason))

    def task_finished(self, product: str, outcome: str, seconds: float) -> None:
        self.recorded.append(("task_finished", product, outcome))
        self.seconds.append(seconds)

    def engine_op(self, engine: str, op: str, seconds: float, error: str | None) -> None:
        self.recorded.append(("engine_op", engine, op, error or ""))
        self.seconds.append(seconds)

    def audit_append(self, seconds: float) -> None:
        self.recorded.append(("audit_append",))
        self.seconds.append(seconds)

    def store_statement(self, statement: str, seconds: float) -> None:
        self.recorded.append(("store_statement", statement))
        self.seconds.append(seconds)

    def of(self, recorder: str) -> list[tuple[str, ...]]:
        return [r[1:] for r in self.recorded if r[0] == recorder]
