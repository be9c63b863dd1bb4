"""The PostgreSQL engine adapter: reads, changes, restores and verifies role passwords.

A new password never reaches the server in clear: its SCRAM-SHA-256 verifier is computed here
(``keyturn.engines.postgres_scram``) and sent as ``ALTER ROLE <identifier> PASSWORD <verifier
literal>``. The plaintext would otherwise land in the server log (``log_statement``, and
``log_min_error_statement`` on any error) and in ``pg_stat_activity``. ``ALTER ROLE`` is a
utility statement and takes no bind parameters, so it is composed with ``psycopg.sql``: the role
name as a quoted ``Identifier``, the verifier as a ``Literal``. Snapshots keep the stored
verifier from ``pg_authid`` (superuser only), so rollback restores exactly what was there. A
non-superuser administrator cannot read ``pg_authid``: its snapshots hold no verifier, and
``restore`` of them is refused.

Before every change the target role is checked (``keyturn.engines.postgres_roles``: it exists,
can log in and is no superuser unless the administrator is one). A probe for a role reports
whether it is a superuser (``rolsuper``), which the service protects (``postgres_reads``). One
autocommit admin connection is kept per node (``keyturn.engines.postgres_admin``), used under a
per-node lock. A verification uses a fresh connection of its own, logged in with the SCRAM keys
of the verifier just written when this engine made it (``keyturn.engines.postgres_scram``). No
SQL text, password, verifier or driver message is logged or copied into an error. This module
imports only ``keyturn.core``, ``keyturn.engines`` and psycopg.

A node in recovery (a streaming standby) is never written: ``set_password`` and ``restore``
leave it to replication, and ``verify`` there first waits until the standby has replayed the
primary's change (``keyturn.engines.postgres_replication``), within the engine timeout plus
``replay_grace`` seconds, else ``VerificationFailed`` naming the standby.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any, Final

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from keyturn.core.engine_ports import (
    AccountInfo,
    ApplyResult,
    CredentialSnapshot,
    EngineInfo,
    SessionMark,
)
from keyturn.core.errors import (
    AccountNotFound,
    AccountPermissionDenied,
    EngineRejected,
    UnsupportedFeature,
    VerificationFailed,
)
from keyturn.core.model import EngineKind, Node, NodeAddress
from keyturn.core.plans import Change, ChangeMode
from keyturn.core.secrets import Secret
from keyturn.engines import (
    postgres_accounts,
    postgres_admin,
    postgres_overlap,
    postgres_reads,
    postgres_sessions,
)
from keyturn.engines.admin_pool import pool_key
from keyturn.engines.base import DEFAULT_TIMEOUT, deadline
from keyturn.engines.postgres_admin import PostgresAdmin
from keyturn.engines.postgres_errors import classify, login_refused
from keyturn.engines.postgres_replication import (
    IN_RECOVERY,
    PRIMARY_POSITION,
    REPLAY_GRACE,
    REPLAYED,
    REPLICATED,
    ReplayPositions,
    await_replay,
)
from keyturn.engines.postgres_roles import (
    Seen,
    checked,
    read_role,
    read_snapshot,
    snapshot_verifier,
)
from keyturn.engines.postgres_scram import (
    DEFAULT_ITERATIONS,
    PreparedVerifiers,
    ScramKeys,
    iterations_of,
    scram_verifier,
)
from keyturn.engines.probed_roles import ProbedAccounts, ProbedRoles
from keyturn.engines.sql_engine import SqlEngine

log = logging.getLogger(__name__)

_ALTER_PASSWORD: Final = sql.SQL("ALTER ROLE {} PASSWORD {}")
_ALTER_PASSWORD_NULL: Final = sql.SQL("ALTER ROLE {} PASSWORD NULL")


class PostgresEngine(SqlEngine[PostgresAdmin]):
    """The ``Engine`` for PostgreSQL. One instance serves every PostgreSQL node; ``timeout``
    bounds each operation (connect included) in seconds."""

    kind: EngineKind = EngineKind.POSTGRES

    engine_name = "PostgreSQL"
    _login_error = psycopg.OperationalError
    _sessions = postgres_sessions

    def __init__(
        self, *, timeout: float = DEFAULT_TIMEOUT, replay_grace: float = REPLAY_GRACE
    ) -> None:
        super().__init__(
            timeout=timeout, grace=replay_grace, classify=classify, refused=login_refused
        )
        self._positions = ReplayPositions()
        #: Whether each node was in recovery when last probed (for the next ``discover``).
        self._probed: ProbedRoles[bool] = ProbedRoles()
        #: What a reset's probe read of its role on each node (for the task's ``snapshot``).
        self._accounts: ProbedAccounts[Seen] = ProbedAccounts()
        # A change's checks follow its write at once; a standby's may wait the replica budget.
        self._keys = ScramKeys(ttl=2 * self._replica_budget + self._timeout)
        self._prepared = PreparedVerifiers()

    # ------------------------------------------------------------------ Engine protocol

    async def probe(self, node: Node, account: str | None = None) -> EngineInfo:
        async def op(admin: PostgresAdmin) -> EngineInfo:
            found = await postgres_reads.probe(admin, account)
            # For the task's discover and snapshot that follow a reset's probe.
            key = pool_key(node)
            if found.standby is not None:
                self._probed.put(key, found.standby)
            if account is not None and found.seen is not None:
                self._accounts.put((key, account), found.seen)
            return found.info

        return await self._admins.run(node, "probe", op)

    async def list_accounts(self, node: Node) -> list[AccountInfo]:
        return await self._admins.run(node, "list accounts", postgres_reads.accounts)

    async def snapshot(self, node: Node, account: str) -> CredentialSnapshot:
        async def op(admin: PostgresAdmin) -> CredentialSnapshot:
            # pg_authid is readable on a standby too, so this works on every node.
            seen = self._accounts.take((pool_key(node), account)) or await read_snapshot(
                admin, account, postgres_overlap.partner(account)
            )
            role, twin = seen.role, seen.partner
            if not role.exists and twin[0] and account.endswith(postgres_overlap.SUFFIX):
                # An overlap's twin not made yet: its ADD makes it, its undo drops it.
                data = postgres_overlap.absent_snapshot(account)
                return CredentialSnapshot(account=account, data=data)
            # A role whose password an overlap's end expired still has its next turn.
            checked(node, admin, replace(role, expired=role.expired and not twin[0]))
            readable = seen.stored is not None
            if seen.stored is False:
                raise AccountNotFound(f"the role does not exist on {node.address.endpoint}")
            if not readable:
                log.warning(
                    "snapshot on %s: the admin cannot read pg_authid; rollback is impossible",
                    node.key,
                )
            data = {
                "verifier": seen.verifier,
                "verifier_readable": readable,
                "superuser": role.superuser,
                **postgres_overlap.snapshot_extra(account, seen.until, twin),
            }
            return CredentialSnapshot(account=account, data=data)

        return await self._admins.run(node, "snapshot", op)

    async def set_password(self, node: Node, account: str, password: Secret) -> ApplyResult:
        async def op(admin: PostgresAdmin) -> ApplyResult:
            # The verifier's PBKDF2 (in a thread) runs while the role is read.
            role, verifier = await asyncio.gather(
                read_role(admin, account), self._verifier(node, admin, account, password)
            )
            if role.standby:
                # Read-only; the primary's change reaches it through the WAL. Its own view of
                # the role may lag, so the primary's checks are the ones that count.
                return REPLICATED
            checked(node, admin, role)
            await self._alter(node, admin, account, verifier)
            return ApplyResult(persisted=True)

        return await self._admins.run(node, "set password", op)

    async def set_password_free(self, node: Node, account: str) -> ApplyResult:
        raise UnsupportedFeature("PostgreSQL has no password-free mode")

    async def restore(self, node: Node, snapshot: CredentialSnapshot) -> ApplyResult:
        account = snapshot.account
        readable, verifier = snapshot_verifier(snapshot)

        async def op(admin: PostgresAdmin) -> ApplyResult:
            if await self._in_recovery(admin):
                return REPLICATED
            if not readable:
                raise EngineRejected("cannot restore: the previous verifier could not be read")
            if not await postgres_overlap.restore_extra(admin.conn, account, dict(snapshot.data)):
                await self._alter(node, admin, account, verifier)
            else:
                await self._record_position(node, admin)
            return ApplyResult(persisted=True)

        return await self._admins.run(node, "restore", op)

    async def create_account(
        self, node: Node, account: str, password: Secret, *, read_only: bool
    ) -> ApplyResult:
        """A login role with no server-controlling attribute (``keyturn.engines.
        postgres_accounts``), made on the primary; a standby gets it through the WAL."""

        async def op(admin: PostgresAdmin) -> ApplyResult:
            if await self._in_recovery(admin):
                return REPLICATED
            verifier = await self._verifier(node, admin, account, password)
            endpoint = node.address.endpoint
            await postgres_accounts.create(
                admin.conn, account, verifier, read_only=read_only, endpoint=endpoint
            )
            await self._record_position(node, admin)
            return ApplyResult(persisted=True)

        return await self._admins.run(node, "create account", op)

    async def drop_account(self, node: Node, account: str) -> ApplyResult:
        async def op(admin: PostgresAdmin) -> ApplyResult:
            if await self._in_recovery(admin):
                return REPLICATED
            await postgres_accounts.drop(admin.conn, account, node.address.endpoint)
            await self._record_position(node, admin)
            return ApplyResult(persisted=True)

        return await self._admins.run(node, "drop account", op)

    def overlap_partner(self, account: str) -> str | None:
        return postgres_overlap.partner(account)

    async def add_password(self, node: Node, account: str, password: Secret) -> ApplyResult:
        """The overlap's new password on ``account`` (the twin made first when missing),
        while its partner role keeps its own."""

        async def op(admin: PostgresAdmin) -> ApplyResult:
            if await self._in_recovery(admin):
                return REPLICATED
            role = await read_role(admin, account)
            if role.exists:
                checked(node, admin, replace(role, expired=False))
            verifier = await self._verifier(node, admin, account, password)
            await self._guarded(
                node, postgres_overlap.add(admin.conn, account, verifier, node.address.endpoint)
            )
            await self._record_position(node, admin)
            return ApplyResult(persisted=True)

        return await self._admins.run(node, "add password", op)

    async def keep_only(self, node: Node, account: str, password: Secret) -> ApplyResult:
        """The overlap ends: ``account`` keeps ``password``, its partner's password expires."""

        async def op(admin: PostgresAdmin) -> ApplyResult:
            if await self._in_recovery(admin):
                return REPLICATED
            checked(node, admin, await read_role(admin, account))
            verifier = await self._verifier(node, admin, account, password)
            await self._alter(node, admin, account, verifier)
            await self._guarded(node, postgres_overlap.expire_partner(admin.conn, account))
            await self._record_position(node, admin)
            return ApplyResult(persisted=True)

        return await self._admins.run(node, "keep only one password", op)

    async def verify_overlap(
        self, node: Node, change: Change, snapshot: CredentialSnapshot | None
    ) -> None:
        """``ADD``: the role logs in with the new password and its partner is still valid;
        ``KEEP_ONLY``: the role logs in and its partner's password has expired."""
        await self.verify(node, change.account, change.password)
        other = postgres_overlap.partner(change.account)

        async def partner_state(admin: PostgresAdmin) -> tuple[bool, bool]:
            exists, _, _, expired = await postgres_overlap.validity(admin.conn, other)
            return exists, expired

        exists, expired = await self._admins.run(node, "check the twin role", partner_state)
        endpoint = node.address.endpoint
        if change.mode is ChangeMode.ADD and exists and expired:
            raise VerificationFailed(f"the current role's password on {endpoint} has expired")
        if change.mode is ChangeMode.KEEP_ONLY and exists and not expired:
            raise VerificationFailed(f"the previous role's password on {endpoint} still works")

    async def session_mark(self, node: Node) -> SessionMark | None:
        return None  # every session's start time is known

    def prepare(self, node: Node, account: str, password: Secret) -> None:
        # The verifier's PBKDF2 is the one cost of a change computed without the server; its
        # iteration count is the one the pooled admin connection reports (4096 before one).
        admin = self._admins.pooled(node)
        iterations = DEFAULT_ITERATIONS if admin is None else iterations_of(admin.conn)
        self._prepared.start(node.instance_id, account, password, iterations)

    async def verify(self, node: Node, account: str, password: Secret | None) -> None:
        if password is None:
            raise UnsupportedFeature("PostgreSQL has no password-free mode")
        await self._verified(
            node,
            account,
            password,
            standby=lambda: self._admins.run(node, "recovery check", self._in_recovery),
            replay=lambda: self._await_replay(node, account, password),
        )

    # ------------------------------------------------------------------ internals

    async def _verifier(
        self, node: Node, admin: PostgresAdmin, account: str, password: Secret
    ) -> str:
        """``password``'s verifier (the one ``prepare`` started, when it fits), its keys kept
        for the checks that follow."""
        iterations = iterations_of(admin.conn)
        made = await self._prepared.take(node.instance_id, account, password, iterations)
        if made is None:
            made = await scram_verifier(admin.conn, account, password)
        self._keys.remember(node.instance_id, account, password, made)
        return made.text

    async def _login(self, node: Node, account: str, password: Secret) -> None:
        """A fresh login as ``account``: with the SCRAM keys of the verifier this engine just
        wrote for ``password`` when it has them (``keyturn.engines.postgres_scram``), else, or
        when that login is refused, with the password itself."""
        keys = self._keys.keys_for(node.instance_id, account, password)
        if keys is not None:
            endpoint = node.address.endpoint
            try:
                async with deadline(self._timeout, endpoint, "verify login"):
                    conn = await postgres_admin.connect(
                        node.address, account, None, timeout=self._timeout, keys=keys
                    )
            except psycopg.Error:
                pass  # refused, or no SCRAM here: the password's own login decides
            else:
                await self._close(conn)
                return
        await super()._login(node, account, password)

    async def _open(self, node: Node, password: Secret | None) -> PostgresAdmin:
        """Log in as the node's admin and read what later checks need."""
        conn = await self._connect(node.address, node.address.username, password)
        return await postgres_admin.login_info(node, conn, password)

    async def _connect(self, address: NodeAddress, user: str, password: Secret | None) -> Any:
        return await postgres_admin.connect(address, user, password, timeout=self._timeout)

    async def _close(self, conn: Any) -> None:
        await postgres_admin.close(conn)

    @staticmethod
    async def _one(
        admin: PostgresAdmin, query: sql.SQL | sql.Composed, params: tuple[Any, ...] | None = None
    ) -> tuple[Any, ...] | None:
        return await postgres_admin.one(admin.conn, query, params)

    async def _is_replica(self, node: Node) -> bool:
        probed = self._probed.take(pool_key(node))
        if probed is not None:
            return probed  # a reset's probe read it a moment ago
        return await self._admins.run(node, "recovery check", self._in_recovery)

    async def _in_recovery(self, admin: PostgresAdmin) -> bool:
        row = await self._one(admin, IN_RECOVERY)
        return bool(row and row[0])

    async def _await_replay(self, node: Node, account: str, password: Secret) -> None:
        """On a standby: wait until it replayed the primary's latest change, then log in."""

        async def replayed(admin: PostgresAdmin, lsn: str) -> bool:
            row = await self._one(admin, REPLAYED, (lsn,))
            return bool(row and row[0])

        await await_replay(
            node.address.endpoint,
            budget=self._replica_budget,
            lsn=self._positions.get(node.instance_id),
            replayed=lambda lsn: self._admins.run(
                node, "replay check", lambda admin: replayed(admin, lsn)
            ),
            login=lambda: self._login(node, account, password),
        )

    async def _alter(
        self, node: Node, admin: PostgresAdmin, account: str, verifier: str | None
    ) -> None:
        """``ALTER ROLE account PASSWORD verifier`` (``PASSWORD NULL`` for None)."""
        if verifier is None:
            statement = _ALTER_PASSWORD_NULL.format(sql.Identifier(account))
        else:
            statement = _ALTER_PASSWORD.format(sql.Identifier(account), sql.Literal(verifier))
        try:
            await admin.conn.execute(statement)
            await self._record_position(node, admin)
        except pg_errors.UndefinedObject:
            raise AccountNotFound(f"the role does not exist on {node.address.endpoint}") from None
        except pg_errors.InsufficientPrivilege:
            raise AccountPermissionDenied(
                f"keyturn's admin may not change the role on {node.address.endpoint}"
            ) from None

    async def _record_position(self, node: Node, admin: PostgresAdmin) -> None:
        """Where a standby must have replayed up to before it can prove the change."""
        row = await self._one(admin, PRIMARY_POSITION)
        if row and row[0] is not None:
            self._positions.record(node.instance_id, str(row[0]))

    @staticmethod
    async def _guarded(node: Node, work: Awaitable[None]) -> None:
        """``work`` with PostgreSQL's privilege error as the domain's."""
        try:
            await work
        except pg_errors.InsufficientPrivilege:
            raise AccountPermissionDenied(
                f"keyturn's admin may not change the roles on {node.address.endpoint}"
            ) from None
