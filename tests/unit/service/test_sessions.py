"""Unit tests of the sessions use case (``keyturn.service.sessions``) without I/O: the last
rotation is the newest succeeded reset or overlap start of that account; sessions are marked
old against it (unknown where the engine cannot tell); a node that cannot be asked is reported,
not fatal; with twin roles the role rotated before its twin holds the old password; ending asks
each node only for its own old and possibly-old ids, never a newer one, and records one audit
event with the count."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from keyturn.core.audit import AuditEvent, AuditOutcome
from keyturn.core.engine_ports import Session, SessionMark
from keyturn.core.errors import EngineUnavailable
from keyturn.core.model import Instance, Node, NodeRole
from keyturn.core.plans import Topology
from keyturn.core.store_ports import Page
from keyturn.core.tasks import Task, TaskKind, TaskState
from keyturn.service.sessions import AccountSessions
from tests.support.fakes import FakeClock, fake_instance, fake_task

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def task(kind: TaskKind, state: TaskState, at: datetime, account: str = "app") -> Task:
    return fake_task(account=account, kind=kind, state=state, created_at=at, verified_at=at)


@dataclass
class Tasks:
    found: list[Task]

    async def list_tasks(
        self, tenant_id: str, *, instance_id: str | None, page: Page, **_: Any
    ) -> tuple[list[Task], int]:
        return self.found[: page.limit], len(self.found)


@dataclass
class Engine:
    """Two nodes; the second one is down when ``down``."""

    nodes: tuple[Node, ...]
    sessions: dict[str, list[Session]]
    down: bool = False
    ended: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    #: Twin roles (PostgreSQL): the account's twin.
    twin: str | None = None

    def overlap_partner(self, account: str) -> str | None:
        return self.twin

    async def discover(self, instance: Instance) -> Topology:
        return Topology(nodes=self.nodes)

    async def list_sessions(self, node: Node, account: str) -> list[Session]:
        if self.down and node is self.nodes[1]:
            raise EngineUnavailable(f"{node.endpoint} is not reachable")
        return self.sessions.get(node.endpoint, [])

    async def end_sessions(self, node: Node, account: str, ids: Sequence[str]) -> int:
        self.ended.append((node.endpoint, tuple(ids)))
        return len(ids)


@dataclass
class Registry:
    driver: Engine

    def engine(self, kind: object) -> Engine:
        return self.driver


@dataclass
class Audit:
    events: list[AuditEvent] = field(default_factory=list)

    async def append(self, event: AuditEvent) -> None:
        self.events.append(event)


def setup(
    tasks: list[Task], *, down: bool = False, twin: str | None = None
) -> tuple[AccountSessions, Engine, Audit]:
    instance = fake_instance()
    primary = replace(instance.nodes[0], role=NodeRole.PRIMARY)
    replica = replace(
        primary, ordinal=1, address=replace(primary.address, port=6380), role=NodeRole.REPLICA
    )

    def s(node: Node, sid: str, at: datetime | None) -> Session:
        return Session(node=node.endpoint, id=sid, account="app", connected_at=at)

    engine = Engine(
        (primary, replica),
        {
            primary.endpoint: [
                s(primary, "1", T0 - timedelta(hours=1)),
                s(primary, "2", T0 + timedelta(minutes=5)),
            ],
            replica.endpoint: [s(replica, "9", None)],
        },
        down=down,
        twin=twin,
    )
    audit = Audit()
    use = AccountSessions(
        cast(Any, Tasks(tasks)), cast(Any, Registry(engine)), FakeClock(T0), cast(Any, audit)
    )
    return use, engine, audit


async def test_the_last_rotation_is_the_newest_succeeded_one_of_the_account() -> None:
    tasks = [
        task(TaskKind.RESET_PASSWORD, TaskState.FAILED, T0 + timedelta(hours=2)),
        task(TaskKind.RESET_PASSWORD, TaskState.SUCCEED, T0 + timedelta(hours=1), "other"),
        task(TaskKind.DROP_OLD_PASSWORDS, TaskState.SUCCEED, T0 + timedelta(minutes=30)),
        task(TaskKind.ADD_PASSWORD, TaskState.SUCCEED, T0),
        task(TaskKind.RESET_PASSWORD, TaskState.SUCCEED, T0 - timedelta(days=1)),
    ]
    use, _, _ = setup(tasks)
    assert await use.last_rotation(fake_instance(), "app") == T0
    assert await use.last_rotation(fake_instance(), "nobody") is None


async def test_sessions_are_marked_against_the_rotation() -> None:
    use, _, _ = setup([task(TaskKind.RESET_PASSWORD, TaskState.SUCCEED, T0)])
    report = await use.find(fake_instance(), "app")
    assert report.since == T0
    assert {v.session.id: v.old for v in report.sessions} == {"1": True, "2": False, "9": None}
    assert [v.session.id for v in report.old] == ["1", "9"]
    unknown = await setup([])[0].find(fake_instance(), "app")
    assert unknown.since is None and all(v.old is None for v in unknown.sessions)


async def test_a_node_that_cannot_be_asked_is_reported() -> None:
    use, _, _ = setup([], down=True)
    report = await use.find(fake_instance(), "app", since=T0)
    assert [v.session.id for v in report.sessions] == ["1", "2"]
    assert len(report.unreachable) == 1 and "not reachable" in report.unreachable[0][1]


async def test_ending_ends_only_old_sessions_per_node_and_is_audited() -> None:
    use, engine, audit = setup([task(TaskKind.RESET_PASSWORD, TaskState.SUCCEED, T0)])
    report = await use.end_old(fake_instance(), "app", actor="unit")
    assert report.ended == 2 and not report.failures
    assert sorted(engine.ended) == sorted([("127.0.0.1:6379", ("1",)), ("127.0.0.1:6380", ("9",))])
    [event] = audit.events
    assert event.outcome is AuditOutcome.SUCCEEDED and event.key_id == "unit"
    assert event.action == "keyturn:EndSessions"
    assert event.resource.endswith("/account/app/sessions-ended/2")


async def test_with_twin_roles_the_role_rotated_before_its_twin_holds_the_old_password() -> None:
    tasks = [
        task(TaskKind.ADD_PASSWORD, TaskState.SUCCEED, T0 + timedelta(hours=2), "app_clone"),
        task(TaskKind.ADD_PASSWORD, TaskState.SUCCEED, T0 - timedelta(days=30)),
    ]
    use, _, _ = setup(tasks, twin="app_clone")
    report = await use.find(fake_instance(), "app")
    assert report.since == T0 + timedelta(hours=2)
    assert all(v.old is True for v in report.sessions)  # opened after or not: old password
    # The twin's own sessions compare with its rotation as usual.
    clone, _, _ = setup(tasks, twin="app")
    marks = {v.session.id: v.old for v in (await clone.find(fake_instance(), "app_clone")).sessions}
    assert marks == {"1": True, "2": True, "9": None}


async def test_connection_id_watermarks_tell_old_from_new_where_start_times_are_unknown() -> None:
    # MariaDB/MySQL: no start times; the rotation's task holds each node's watermark.
    started = 1_700_000_000

    def s(node: Node, sid: str, run: int | None = started) -> Session:
        return Session(node=node.endpoint, id=sid, account="app", run_started=run)

    primary, replica = setup([])[1].nodes
    rotation = replace(
        task(TaskKind.ADD_PASSWORD, TaskState.SUCCEED, T0),
        session_marks=(
            (primary.endpoint, SessionMark(started=started + 1, high=42).text()),
            (replica.endpoint, SessionMark(started=started, high=7).text()),
        ),
    )
    use, engine, _ = setup([rotation])
    engine.sessions = {
        primary.endpoint: [s(primary, "41"), s(primary, "42"), s(primary, "43")],
        # The replica restarted since its mark (ids began again): no verdict there.
        replica.endpoint: [s(replica, "3", started + 600)],
    }
    report = await use.find(fake_instance(), "app")
    assert {(v.session.node, v.session.id): v.old for v in report.sessions} == {
        (primary.endpoint, "41"): True,
        (primary.endpoint, "42"): True,
        (primary.endpoint, "43"): False,
        (replica.endpoint, "3"): None,
    }
    assert dict(report.marks)[primary.endpoint].high == 42
    told = {v.session.id: (v.by, report.explain(v)) for v in report.sessions}
    assert told == {
        "41": ("connection_id", "old (id <= 42)"),
        "42": ("connection_id", "old (id <= 42)"),
        "43": ("connection_id", "new (id > 42)"),
        "3": ("", "? (server restarted since the rotation)"),
    }
    ended = await use.end_old(fake_instance(), "app", actor="test")
    assert sorted(engine.ended) == [(primary.endpoint, ("41", "42")), (replica.endpoint, ("3",))]
    assert ended.ended == 3


def test_a_session_mark_reads_back_only_from_its_own_bounded_text() -> None:
    mark = SessionMark(started=1_700_000_000, high=12)
    assert SessionMark.parse(mark.text()) == mark
    for bad in ("", "12", "a:1", "1:-2", "1:2:3", "1:" + "9" * 21):
        assert SessionMark.parse(bad) is None
    assert mark.same_run(1_700_000_002) and not mark.same_run(1_700_000_003)
    unordered = Session(node="n", id="12", account="app")
    assert unordered.opened_before_mark(mark) is None
