"""Who still uses an overlap's old password, asked for a secret's rotation flow: whether it can
be dropped before the overlap ends, and ending its sessions at the end.

A secret with ``drop_old = "when-unused"`` loses its old password as soon as no session that
logged in before the rotation remains (``AccountSessions``: every node of the instance; a
session the engine cannot place counts as old, and so does a node that cannot be asked, so an
early drop happens only on a complete "nobody"); the overlap's end still drops it in any case.
The login holding the old password is the flow's account (Redis ACL users, MariaDB
authentication chains, MySQL dual passwords: one account, two passwords) or, with twin roles
(PostgreSQL), the flow's account's twin: every session of it holds the old password. A
secret with ``end_old_sessions = true`` has those sessions ended as the old password is
dropped at the overlap's end, the count recorded in the audit log (``keyturn:EndSessions``).
A flow whose task replaced the password (a secret's first version) held no old password
beside it: its follow-up may go at once, and it ends no session. Imports: ``keyturn.core``
and this package.
"""

from __future__ import annotations

import logging

from keyturn.core.engine_ports import EngineRegistry
from keyturn.core.errors import DomainError
from keyturn.core.secret_manager import RotationFlow, SecretRecord, SecretRepo
from keyturn.core.store_ports import Store
from keyturn.core.tasks import TaskKind
from keyturn.service.secret_rotation import SYSTEM_KEY, Rotator
from keyturn.service.sessions import AccountSessions, SessionReport

log = logging.getLogger(__name__)


class OldPasswordUse:
    """The sessions of an overlap flow's old password."""

    def __init__(
        self,
        repo: SecretRepo,
        store: Store,
        rotator: Rotator,
        engines: EngineRegistry,
        sessions: AccountSessions,
    ) -> None:
        self._repo = repo
        self._store = store
        self._rotator = rotator
        self._engines = engines
        self._sessions = sessions

    async def _old(self, record: SecretRecord, flow: RotationFlow) -> SessionReport:
        instance = await self._rotator.instance_of(record.spec)
        partner = self._engines.engine(instance.engine).overlap_partner(record.spec.account)
        login = flow.account
        if partner is not None:
            # Twin roles: the flow set the new password on one; the other holds the old one.
            login = partner if flow.account == record.spec.account else record.spec.account
        return await self._sessions.find(instance, login)

    async def _added(self, flow: RotationFlow) -> bool:
        """Whether ``flow``'s task added its password beside the old one (an overlap)."""
        if flow.task_id is None:
            return False
        task = await self._store.get_task(flow.tenant_id, flow.task_id)
        return task.kind is TaskKind.ADD_PASSWORD

    async def unused(self, flow: RotationFlow) -> bool:
        """Whether no session from before ``flow``'s rotation remains (False when that cannot
        be told: a node not answering, an engine error)."""
        try:
            record = await self._repo.get_secret(flow.tenant_id, flow.name)
            if record.current_version != flow.version_id:
                return False  # a later rotation replaced it: its own follow-up drops
            if not await self._added(flow):
                return True  # nothing was held beside it
            report = await self._old(record, flow)
        except DomainError as exc:
            log.warning("could not list the old password's sessions: %s", exc.message)
            return False
        return not report.unreachable and not report.old

    async def end_at_grace_end(self, flow: RotationFlow) -> int | None:
        """End the old password's sessions if the secret asks for it; how many (None: not
        asked, or a later rotation replaced the flow). Audited by ``AccountSessions``."""
        record = await self._repo.get_secret(flow.tenant_id, flow.name)
        if not record.spec.end_old_sessions or record.current_version != flow.version_id:
            return None
        if not await self._added(flow):
            return None
        instance = await self._rotator.instance_of(record.spec)
        report = await self._old(record, flow)
        ended = await self._sessions.end_old(instance, report.account, actor=SYSTEM_KEY, source="")
        log.info(
            "old password's sessions ended at the overlap's end",
            extra={"flow_id": flow.flow_id, "ended": ended.ended},
        )
        return ended.ended
