"""Who still uses the old password: an account's open sessions on every node of an instance,
those opened before the last rotation marked, and (on request) ended with an audit record.

The instance is discovered as it is now (``Engine.discover``: every data node, replicas and
cluster shards included; sentinels hold no application sessions) and each node is asked for
the account's sessions (``Engine.list_sessions``) concurrently; a node that cannot be asked is
reported, not fatal. A session is *old* when it was opened before the instant given, by default
the account's last rotation: the ``verified_at`` of its newest succeeded task (a reset or an
overlap's first half) among the instance's ``TASK_SCAN`` newest tasks. Where the engine cannot
tell when a session was opened (MariaDB/MySQL), that task's per-node connection-id watermark
(``SessionMark``, taken once its change was applied and verified) tells instead: an id at most the
mark's is old, a higher one new; without a mark (an explicit instant, a task from before
marks, a server restarted since) ``old`` is None: possibly old. With twin roles
(PostgreSQL overlaps) the role whose twin was rotated last holds the older password: all of its
sessions are old. Ending ends the
old and the possibly old ones (never one known to be newer) node by node
(``Engine.end_sessions``, which re-checks each id is still the account's), and appends one
audit event with the count (``keyturn:EndSessions``; the count is in its resource, as
``.../sessions-ended/N``, since audit events have no free-text field). Ended sessions' clients
usually reconnect, with whatever password they hold now.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from keyturn.core.audit import AuditEvent, AuditOutcome
from keyturn.core.engine_ports import Engine, EngineRegistry, Session, SessionMark
from keyturn.core.errors import DomainError
from keyturn.core.model import Instance, Node
from keyturn.core.plans import Topology
from keyturn.core.ports import AuditLog, Clock
from keyturn.core.store_ports import Page, Store
from keyturn.core.tasks import Task, TaskKind, TaskState

log = logging.getLogger(__name__)

#: How many of the instance's newest tasks are searched for the account's last rotation.
TASK_SCAN = 100
_ROTATIONS = frozenset({TaskKind.RESET_PASSWORD, TaskKind.ADD_PASSWORD})


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionView:
    session: Session
    #: Opened before the instant: True, False, or None when the engine cannot tell.
    old: bool | None
    #: What told: ``"start_time"`` (the session's start against the rotation's instant),
    #: ``"connection_id"`` (its id against the node's watermark), ``"twin_role"`` (the twin
    #: holds the newer password), or ``""`` (nothing could).
    by: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionReport:
    instance_id: str
    account: str
    #: The instant sessions are compared with (the last rotation), None when unknown.
    since: datetime | None
    #: The rotation's connection-id watermarks by node endpoint (MariaDB/MySQL), if any.
    marks: tuple[tuple[str, SessionMark], ...] = ()
    sessions: tuple[SessionView, ...] = ()
    #: Nodes that could not be asked, with the reason (no secret in it).
    unreachable: tuple[tuple[str, str], ...] = ()
    #: How many sessions were ended, when ending was asked for.
    ended: int | None = None
    failures: tuple[tuple[str, str], ...] = field(default=())

    @property
    def old(self) -> tuple[SessionView, ...]:
        """The sessions that may still use the old password (old or possibly old)."""
        return tuple(v for v in self.sessions if v.old is not False)

    def explain(self, view: SessionView) -> str:
        """``old``/``new``/``?`` with what told, for people: ``old (id <= 42)``."""
        word = {True: "old", False: "new", None: "?"}[view.old]
        mark = dict(self.marks).get(view.session.node)
        if view.by == "connection_id" and mark is not None:
            return f"{word} (id {'<=' if view.old else '>'} {mark.high})"
        if view.by == "twin_role":
            return f"{word} (twin role rotated since)"
        if view.old is None and mark is not None:
            return "? (server restarted since the rotation)"
        return word


def _verdict(
    session: Session, since: datetime | None, mark: SessionMark | None, superseded: bool
) -> SessionView:
    if superseded:
        return SessionView(session=session, old=True, by="twin_role")
    if session.connected_at is None and mark is not None:
        old = session.opened_before_mark(mark)
        return SessionView(session=session, old=old, by="" if old is None else "connection_id")
    if since is None or session.connected_at is None:
        return SessionView(session=session, old=None)
    return SessionView(session=session, old=session.opened_before(since), by="start_time")


class AccountSessions:
    """List and end an account's sessions."""

    def __init__(
        self, store: Store, engines: EngineRegistry, clock: Clock, audit: AuditLog | None = None
    ) -> None:
        self._store = store
        self._engines = engines
        self._clock = clock
        self._audit = audit

    async def last_rotation(self, instance: Instance, account: str) -> datetime | None:
        """When the account's password last changed through keyturn (its newest succeeded
        reset or overlap start), or None."""
        task = await self.last_rotation_task(instance, account)
        return None if task is None else task.verified_at

    async def last_rotation_task(self, instance: Instance, account: str) -> Task | None:
        """The account's newest succeeded reset or overlap start, or None."""
        found, _ = await self._store.list_tasks(
            instance.tenant_id, instance_id=instance.id, page=Page(limit=TASK_SCAN)
        )
        for task in found:  # newest first
            if (
                task.account == account
                and task.kind in _ROTATIONS
                and task.state is TaskState.SUCCEED
                and task.verified_at is not None
            ):
                return task
        return None

    async def find(
        self, instance: Instance, account: str, *, since: datetime | None = None
    ) -> SessionReport:
        engine = self._engines.engine(instance.engine)
        superseded = False
        marks: dict[str, SessionMark] = {}
        if since is None:
            task = await self.last_rotation_task(instance, account)
            since = None if task is None else task.verified_at
            if task is not None:
                for endpoint, raw in task.session_marks:
                    mark = SessionMark.parse(raw)
                    if mark is not None:
                        marks[endpoint] = mark
            partner = engine.overlap_partner(account)
            if partner is not None:
                # Twin roles (PostgreSQL): when the twin got the newest password, every session
                # of this role holds the older one, whenever it was opened.
                theirs = await self.last_rotation(instance, partner)
                if theirs is not None and (since is None or theirs > since):
                    since, superseded = theirs, True
        topology = await engine.discover(instance)

        async def ask(node: Node) -> list[Session] | DomainError:
            try:
                return await engine.list_sessions(node, account)
            except DomainError as exc:
                return exc

        answers = await asyncio.gather(*(ask(n) for n in topology.nodes))
        views: list[SessionView] = []
        unreachable: list[tuple[str, str]] = []
        for node, answer in zip(topology.nodes, answers, strict=True):
            if isinstance(answer, DomainError):
                unreachable.append((node.endpoint, answer.message))
                continue
            views += [_verdict(s, since, marks.get(s.node), superseded) for s in answer]
        return SessionReport(
            instance_id=instance.id,
            account=account,
            since=since,
            marks=tuple(sorted(marks.items())),
            sessions=tuple(views),
            unreachable=tuple(unreachable),
        )

    async def end_old(
        self,
        instance: Instance,
        account: str,
        *,
        since: datetime | None = None,
        actor: str = "cli",
        source: str = "",
    ) -> SessionReport:
        """End the sessions that may still use the old password; the report of what was
        listed, with ``ended``."""
        report = await self.find(instance, account, since=since)
        engine = self._engines.engine(instance.engine)
        topology = await engine.discover(instance)
        nodes = {n.endpoint: n for n in topology.nodes}
        by_node: dict[str, list[str]] = {}
        for view in report.old:
            by_node.setdefault(view.session.node, []).append(view.session.id)
        ended, failures = 0, []
        for endpoint, ids in by_node.items():
            node = nodes.get(endpoint)
            if node is None:
                failures.append((endpoint, "the node is no longer part of the instance"))
                continue
            try:
                ended += await engine.end_sessions(node, account, ids)
            except DomainError as exc:
                failures.append((endpoint, exc.message))
        await self._record(
            instance, account, ended, failed=bool(failures), actor=actor, source=source
        )
        return SessionReport(
            instance_id=report.instance_id,
            account=account,
            since=report.since,
            marks=report.marks,
            sessions=report.sessions,
            unreachable=report.unreachable,
            ended=ended,
            failures=tuple(failures),
        )

    async def _record(
        self, instance: Instance, account: str, ended: int, *, failed: bool, actor: str, source: str
    ) -> None:
        if self._audit is None:
            return
        await self._audit.append(
            AuditEvent(
                at=self._clock.now(),
                tenant_id=instance.tenant_id,
                key_id=actor,
                source_ip=source,
                user_agent="keyturn",
                vendor="keyturn",
                action="keyturn:EndSessions",
                neutral_action="end_sessions",
                resource=f"instance/{instance.id}/account/{account}/sessions-ended/{ended}",
                outcome=AuditOutcome.FAILED if failed else AuditOutcome.SUCCEEDED,
                request_id=uuid.uuid4().hex,
            )
        )


async def session_marks(engine: Engine, topology: Topology) -> dict[str, str]:
    """Each node of ``topology``: its connection-id watermark (``Engine.session_mark``) now,
    as ``SessionMark.text()``. The worker takes them once a change is applied and verified on
    every node (a replica has replayed it by then; any later instant only counts more
    sessions as old, never an old one as new). A node that cannot say gets none: its
    sessions stay "possibly old"; the change is not at stake."""
    marks: dict[str, str] = {}
    for node in topology.nodes:
        try:
            mark = await engine.session_mark(node)
        except DomainError as exc:
            log.warning("no session mark on %s: %s", node.endpoint, exc.message)
            continue
        if mark is not None:
            marks[node.endpoint] = mark.text()
    return marks
