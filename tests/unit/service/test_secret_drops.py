"""Unit tests of ``OldPasswordUse`` (no I/O: stub repo, store, rotator, engines and session
listing): the old password is unused only on a complete "nobody" (no old or possibly-old
session, every node asked); a flow replaced by a later rotation is never dropped early, a flow
that replaced the password (a first version) has nothing beside it; with twin roles the role
asked about is the twin of the one the flow set; sessions are ended at the grace end only when
the secret asks for it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from keyturn.core.engine_ports import Session
from keyturn.core.secret_manager import (
    FlowState,
    SecretRecord,
    SecretSpec,
    SecretVendor,
)
from keyturn.core.tasks import TaskKind
from keyturn.service.secret_drops import OldPasswordUse
from keyturn.service.sessions import SessionReport, SessionView
from tests.support.fakes import fake_flow, fake_instance

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
FLOW = fake_flow(
    "flow-1",
    name="orders",
    state=FlowState.SUCCEEDED,
    created_at=T0,
    version_id="v-2",
    task_id=7,
    drop_old_at=T0 + timedelta(minutes=10),
)


def record(**changes: Any) -> SecretRecord:
    spec = SecretSpec(
        tenant_id="1300000001",
        name="orders",
        vendor=SecretVendor.TENCENT_SSM,
        instance_id="crs-fake0001",
        account="app",
        overlap=timedelta(minutes=10),
        end_old_sessions=changes.pop("end_old_sessions", False),
    )
    fields: dict[str, Any] = {"current_version": "v-2", **changes}
    return SecretRecord(spec=spec, created_at=T0, rotation_enabled=False, **fields)


@dataclass
class World:
    record: SecretRecord = field(default_factory=record)
    kind: TaskKind = TaskKind.ADD_PASSWORD
    twin: str | None = None
    old: tuple[bool | None, ...] = ()
    unreachable: tuple[tuple[str, str], ...] = ()
    asked: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)

    # the secret repo, the task store, the rotator, the engines and the sessions use case
    async def get_secret(self, tenant_id: str, name: str) -> SecretRecord:
        return self.record

    async def get_task(self, tenant_id: str, task_id: int) -> Any:
        return replace_kind(self.kind)

    async def instance_of(self, spec: SecretSpec) -> Any:
        return fake_instance()

    def engine(self, kind: object) -> World:
        return self

    def overlap_partner(self, account: str) -> str | None:
        return self.twin

    async def find(self, instance: Any, account: str) -> SessionReport:
        self.asked.append(account)
        views = tuple(
            SessionView(session=Session(node="n:1", id=str(i), account=account), old=old)
            for i, old in enumerate(self.old)
        )
        return SessionReport(
            instance_id="crs-fake0001",
            account=account,
            since=T0,
            sessions=views,
            unreachable=self.unreachable,
        )

    async def end_old(self, instance: Any, account: str, **_: Any) -> SessionReport:
        self.ended.append(account)
        report = await self.find(instance, account)
        return replace(report, ended=len(report.old))


def replace_kind(kind: TaskKind) -> Any:
    @dataclass
    class Task:
        kind: TaskKind

    return Task(kind)


def use(world: World) -> OldPasswordUse:
    w = cast(Any, world)
    return OldPasswordUse(w, w, w, w, w)


async def test_unused_only_on_a_complete_nobody() -> None:
    assert await use(World(old=(False, False))).unused(FLOW)
    assert not await use(World(old=(False, True))).unused(FLOW)
    assert not await use(World(old=(None,))).unused(FLOW)  # possibly old: wait
    assert not await use(World(unreachable=(("n:2", "down"),))).unused(FLOW)


async def test_a_replaced_flow_waits_and_a_first_version_has_nothing_beside_it() -> None:
    later = World(record=record(current_version="v-3"))
    assert not await use(later).unused(FLOW) and later.asked == []
    first = World(kind=TaskKind.RESET_PASSWORD, old=(True,))
    assert await use(first).unused(FLOW) and first.asked == []


async def test_twin_roles_ask_about_the_role_holding_the_old_password() -> None:
    world = World(twin="app_clone")
    await use(world).unused(FLOW)  # the flow set app: app_clone holds the old password
    await use(world).unused(replace(FLOW, account="app_clone"))
    assert world.asked == ["app_clone", "app"]


async def test_sessions_are_ended_at_the_grace_end_only_when_asked() -> None:
    quiet = World(old=(True,))
    assert await use(quiet).end_at_grace_end(FLOW) is None and quiet.ended == []
    asked = World(record=record(end_old_sessions=True), old=(True, False, True))
    assert await use(asked).end_at_grace_end(FLOW) == 2 and asked.ended == ["app"]
