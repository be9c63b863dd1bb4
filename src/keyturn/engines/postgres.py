"""The PostgreSQL engine adapter: reads, changes, restores and verifies role passwords.

A new password never reaches the server in clear: its SCRAM-SHA-256 verifier (4096 iterations,
SASLprep applied) is computed here with libpq's ``PQencryptPasswordConn`` and sent as
``ALTER ROLE <identifier> PASSWORD <verifier literal>``. The plaintext would otherwise land in
the server log (``log_statement``, and ``log_min_error_statement`` on any error) and in
``pg_stat_activity``. ``ALTER ROLE`` is a utility statement and takes no bind parameters, so it
is composed with ``psycopg.sql``: the role name as a quoted ``Identifier``, the verifier as a
``Literal``. Snapshots keep the stored verifier from ``pg_authid`` (superuser only), so rollback
restores exactly what was there. A non-superuser administrator cannot read ``pg_authid``: its
snapshots hold no verifier, and ``restore`` of them is refused.

Before every change the target role is checked: it must exist, be able to log in (``LOGIN``, and
``VALID UNTIL``, which a password change does not reset, not in the past), and must not be a
superuser unless the administrator is one. A probe for a role reports whether it is a superuser
(``rolsuper``), which the service protects. One autocommit admin connection is kept per node,
used under a per-node lock. A verification uses a fresh connection of its own. No SQL text,
password, verifier or driver message is logged or copied into an error. This module imports
only ``keyturn.core``, ``keyturn.engines`` and psycopg.

A node in recovery (a streaming standby) is never written: ``set_password`` and ``restore``
leave it to replication, and ``verify`` there first waits until the standby has replayed the
primary's change (``keyturn.engines.postgres_replication``), within the engine timeout plus
``replay_grace`` seconds, else ``VerificationFailed`` naming the standby.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from keyturn.core.engine_ports import (
    AccountInfo,
    ApplyResult,
    CredentialSnapshot,
    EngineInfo,
    Session,
    SessionMark,
)
from keyturn.core.errors import (
    AccountCannotLogin,
    AccountNotFound,
    AccountPermissionDenied,
    EngineRejected,
    InternalError,
    UnsupportedFeature,
    VerificationFailed,
)
from keyturn.core.model import EngineKind, Node, NodeAddress
from keyturn.core.plans import Change, ChangeMode
from keyturn.core.secrets import Secret
from keyturn.engines import postgres_accounts, postgres_overlap, postgres_sessions
from keyturn.engines.admin_pool import AdminPool
from keyturn.engines.base import DEFAULT_TIMEOUT, check_timeout, close_quietly, engine_call
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
from keyturn.engines.sql_engine import SqlEngine

log = logging.getLogger(__name__)

T = TypeVar("T")

Connection = psycopg.AsyncConnection[tuple[Any, ...]]

#: Database to log in to when the node URL names none.
DEFAULT_DATABASE: Final = "postgres"
#: libpq's lowest useful ``connect_timeout``, in whole seconds.
_MIN_CONNECT_TIMEOUT: Final = 2
_APPLICATION_NAME: Final = "keyturn"
#: Connection parameters a node URL's query may carry, passed on to libpq.
_PASSED_OPTIONS: Final = frozenset(
    {"sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "target_session_attrs"}
)

_LOGIN_INFO: Final = sql.SQL(
    "SELECT current_setting('server_version'), r.rolsuper"
    " FROM pg_catalog.pg_roles r WHERE r.rolname = current_user"
)
#: The role and whether the node is a standby, in one round trip: always exactly one row.
_ROLE: Final = sql.SQL(
    "SELECT pg_catalog.pg_is_in_recovery(), r.rolname IS NOT NULL, r.rolcanlogin,"
    " r.rolvaliduntil IS NOT NULL AND r.rolvaliduntil <= now(),"
    " r.rolsuper"
    " FROM (VALUES (1)) AS one (x)"
    " LEFT JOIN pg_catalog.pg_roles r ON r.rolname = %s"
)
#: The version and whether a role is a superuser (NULL: no such role), in one round trip.
_PROBE: Final = sql.SQL(
    "SELECT current_setting('server_version'),"
    " (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = %s)"
)
_VERIFIER: Final = sql.SQL("SELECT a.rolpassword FROM pg_catalog.pg_authid a WHERE a.rolname = %s")
_ACCOUNTS: Final = sql.SQL(
    "SELECT r.rolname, r.rolvaliduntil IS NULL OR r.rolvaliduntil > now()"
    " FROM pg_catalog.pg_roles r WHERE r.rolcanlogin ORDER BY r.rolname"
)
_ALTER_PASSWORD: Final = sql.SQL("ALTER ROLE {} PASSWORD {}")
_ALTER_PASSWORD_NULL: Final = sql.SQL("ALTER ROLE {} PASSWORD NULL")


@dataclass(slots=True)
class _Admin:
    """A pooled admin connection and what keyturn learnt when it logged in."""

    conn: Connection
    username: str
    password: Secret | None
    version: str
    superuser: bool

    def alive(self) -> bool:
        return not self.conn.closed

    async def aclose(self) -> None:
        await _close(self.conn)


@dataclass(frozen=True, slots=True)
class _Role:
    """A role as ``_ROLE`` reads it, and whether the node it was read on is a standby."""

    standby: bool
    exists: bool
    can_login: bool
    expired: bool
    superuser: bool


async def _close(conn: Connection) -> None:
    await close_quietly(conn.close(), "a postgres connection")


def _snapshot_verifier(snapshot: CredentialSnapshot) -> tuple[bool, str | None]:
    """(readable, verifier) from a snapshot this engine took."""
    data = snapshot.data
    verifier = data.get("verifier")
    readable = data.get("verifier_readable", verifier is not None)
    if not isinstance(readable, bool) or not (verifier is None or isinstance(verifier, str)):
        raise InternalError("the credential snapshot is not one of PostgreSQL")
    return readable, verifier


class PostgresEngine(SqlEngine):
    """The ``Engine`` for PostgreSQL. One instance serves every PostgreSQL node; ``timeout``
    bounds each operation (connect included) in seconds."""

    kind: EngineKind = EngineKind.POSTGRES

    engine_name = "PostgreSQL"

    def __init__(
        self, *, timeout: float = DEFAULT_TIMEOUT, replay_grace: float = REPLAY_GRACE
    ) -> None:
        self._timeout = check_timeout(timeout)
        self._replay_budget = self._timeout + max(0.0, replay_grace)
        self._admins: AdminPool[_Admin] = AdminPool(
            timeout=self._timeout, classify=classify, open=self._open, refused=login_refused
        )
        self._positions = ReplayPositions()

    @property
    def timeout(self) -> float:
        return self._timeout

    # ------------------------------------------------------------------ Engine protocol

    async def probe(self, node: Node, account: str | None = None) -> EngineInfo:
        async def op(admin: _Admin) -> EngineInfo:
            # Always a round trip, even on a pooled connection: a probe is a health check.
            row = await self._one(admin, _PROBE, (account,))
            admin.version = str(row[0]) if row else admin.version
            superuser = None if row is None or row[1] is None else bool(row[1])
            exists = None if account is None else superuser is not None
            if exists is False and account and account.endswith(postgres_overlap.SUFFIX):
                exists = None  # a twin role is made by its overlap's first ADD: no answer
            return EngineInfo(
                version=admin.version,
                accounts=True,
                password_free=None,
                superuser=superuser,
                account_exists=exists,
            )

        return await self._admins.run(node, "probe", op)

    async def list_accounts(self, node: Node) -> list[AccountInfo]:
        async def op(admin: _Admin) -> list[AccountInfo]:
            async with admin.conn.cursor() as cur:
                await cur.execute(_ACCOUNTS)
                rows = await cur.fetchall()
            return [
                AccountInfo(name=str(name), enabled=bool(valid), password_free=False)
                for name, valid in rows
            ]

        return await self._admins.run(node, "list accounts", op)

    async def snapshot(self, node: Node, account: str) -> CredentialSnapshot:
        async def op(admin: _Admin) -> CredentialSnapshot:
            # pg_authid is readable on a standby too, so this works on every node.
            role = await self._role(admin, account)
            twin = await postgres_overlap.validity(admin.conn, postgres_overlap.partner(account))
            if not role.exists and twin[0] and account.endswith(postgres_overlap.SUFFIX):
                # An overlap's twin not made yet: its ADD makes it, its undo drops it.
                data = postgres_overlap.absent_snapshot(account)
                return CredentialSnapshot(account=account, data=data)
            # A role whose password an overlap's end expired still has its next turn.
            self._checked(node, admin, replace(role, expired=role.expired and not twin[0]))
            verifier: str | None = None
            readable = admin.superuser
            if readable:
                row = await self._one(admin, _VERIFIER, (account,))
                if row is None:
                    raise AccountNotFound(f"the role does not exist on {node.address.endpoint}")
                verifier = None if row[0] is None else str(row[0])
            else:
                log.warning(
                    "snapshot on %s: the admin cannot read pg_authid; rollback is impossible",
                    node.key,
                )
            data = {
                "verifier": verifier,
                "verifier_readable": readable,
                "superuser": role.superuser,
                **await postgres_overlap.snapshot_extra(admin.conn, account),
            }
            return CredentialSnapshot(account=account, data=data)

        return await self._admins.run(node, "snapshot", op)

    async def set_password(self, node: Node, account: str, password: Secret) -> ApplyResult:
        async def op(admin: _Admin) -> ApplyResult:
            role = await self._role(admin, account)
            if role.standby:
                # Read-only; the primary's change reaches it through the WAL. Its own view of
                # the role may lag, so the primary's checks are the ones that count.
                return REPLICATED
            self._checked(node, admin, role)
            verifier = self._verifier(admin, account, password)
            await self._alter(node, admin, account, verifier)
            return ApplyResult(persisted=True)

        return await self._admins.run(node, "set password", op)

    async def set_password_free(self, node: Node, account: str) -> ApplyResult:
        raise UnsupportedFeature("PostgreSQL has no password-free mode")

    async def restore(self, node: Node, snapshot: CredentialSnapshot) -> ApplyResult:
        account = snapshot.account
        readable, verifier = _snapshot_verifier(snapshot)

        async def op(admin: _Admin) -> ApplyResult:
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

        async def op(admin: _Admin) -> ApplyResult:
            if await self._in_recovery(admin):
                return REPLICATED
            verifier = self._verifier(admin, account, password)
            endpoint = node.address.endpoint
            await postgres_accounts.create(
                admin.conn, account, verifier, read_only=read_only, endpoint=endpoint
            )
            await self._record_position(node, admin)
            return ApplyResult(persisted=True)

        return await self._admins.run(node, "create account", op)

    async def drop_account(self, node: Node, account: str) -> ApplyResult:
        async def op(admin: _Admin) -> ApplyResult:
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

        async def op(admin: _Admin) -> ApplyResult:
            if await self._in_recovery(admin):
                return REPLICATED
            role = await self._role(admin, account)
            if role.exists:
                self._checked(node, admin, replace(role, expired=False))
            verifier = self._verifier(admin, account, password)
            await self._guarded(
                node, postgres_overlap.add(admin.conn, account, verifier, node.address.endpoint)
            )
            await self._record_position(node, admin)
            return ApplyResult(persisted=True)

        return await self._admins.run(node, "add password", op)

    async def keep_only(self, node: Node, account: str, password: Secret) -> ApplyResult:
        """The overlap ends: ``account`` keeps ``password``, its partner's password expires."""

        async def op(admin: _Admin) -> ApplyResult:
            if await self._in_recovery(admin):
                return REPLICATED
            self._checked(node, admin, await self._role(admin, account))
            await self._alter(node, admin, account, self._verifier(admin, account, password))
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

        async def partner_state(admin: _Admin) -> tuple[bool, bool]:
            exists, _, _, expired = await postgres_overlap.validity(admin.conn, other)
            return exists, expired

        exists, expired = await self._admins.run(node, "check the twin role", partner_state)
        endpoint = node.address.endpoint
        if change.mode is ChangeMode.ADD and exists and expired:
            raise VerificationFailed(f"the current role's password on {endpoint} has expired")
        if change.mode is ChangeMode.KEEP_ONLY and exists and not expired:
            raise VerificationFailed(f"the previous role's password on {endpoint} still works")

    async def list_sessions(self, node: Node, account: str) -> list[Session]:
        async def op(admin: _Admin) -> list[Session]:
            return await postgres_sessions.listed(admin.conn, node, account)

        return await self._admins.run(node, "list sessions", op)

    async def session_mark(self, node: Node) -> SessionMark | None:
        return None  # every session's start time is known

    async def end_sessions(self, node: Node, account: str, ids: Sequence[str]) -> int:
        async def op(admin: _Admin) -> int:
            return await postgres_sessions.ended(admin.conn, account, ids)

        return await self._admins.run(node, "end sessions", op)

    async def verify(self, node: Node, account: str, password: Secret | None) -> None:
        if password is None:
            raise UnsupportedFeature("PostgreSQL has no password-free mode")
        standby = await self._admins.run(node, "recovery check", self._in_recovery)
        if standby:
            await self._await_replay(node, account, password)
        else:
            await self._login(node, account, password)

    # ------------------------------------------------------------------ internals

    async def _open(self, node: Node, password: Secret | None) -> _Admin:
        """Log in as the node's admin and read what later checks need."""
        conn = await self._connect(node.address, node.address.username, password)
        try:
            row = await self._one_on(conn, _LOGIN_INFO)
        except BaseException:
            await _close(conn)
            raise
        version, superuser = (str(row[0]), bool(row[1])) if row else ("", False)
        log.debug("admin connection for %s ready (PostgreSQL %s)", node.key, version)
        return _Admin(conn, node.address.username, password, version, superuser)

    async def _connect(
        self, address: NodeAddress, user: str, password: Secret | None
    ) -> Connection:
        """A new autocommit connection logged in as ``user``."""
        params: dict[str, Any] = {
            key: value for key, value in address.options.items() if key in _PASSED_OPTIONS
        }
        if password is not None:
            params["password"] = password.reveal()
        return await psycopg.AsyncConnection.connect(
            host=address.host,
            port=address.port,
            user=user,
            dbname=address.database or DEFAULT_DATABASE,
            connect_timeout=max(_MIN_CONNECT_TIMEOUT, math.ceil(self._timeout)),
            application_name=_APPLICATION_NAME,
            autocommit=True,
            **params,
        )

    async def _one(
        self, admin: _Admin, query: sql.SQL | sql.Composed, params: tuple[Any, ...] | None = None
    ) -> tuple[Any, ...] | None:
        return await self._one_on(admin.conn, query, params)

    @staticmethod
    async def _one_on(
        conn: Connection, query: sql.SQL | sql.Composed, params: tuple[Any, ...] | None = None
    ) -> tuple[Any, ...] | None:
        async with conn.cursor() as cur:
            await cur.execute(query, params)
            return await cur.fetchone()

    async def _role(self, admin: _Admin, account: str) -> _Role:
        row = await self._one(admin, _ROLE, (account,))
        if row is None:  # the query always yields one row; defensive only
            raise InternalError("the role query returned no row")
        return _Role(*(bool(value) for value in row))

    @staticmethod
    def _checked(node: Node, admin: _Admin, role: _Role) -> _Role:
        """``role``, if it exists, can log in and may be changed by this admin."""
        endpoint = node.address.endpoint
        if not role.exists:
            raise AccountNotFound(f"the role does not exist on {endpoint}")
        if not role.can_login:
            raise AccountCannotLogin(f"the role on {endpoint} has no LOGIN right")
        if role.expired:
            raise AccountCannotLogin(f"the role's VALID UNTIL on {endpoint} is in the past")
        if role.superuser and not admin.superuser:
            raise AccountPermissionDenied(
                f"the role on {endpoint} is a superuser and keyturn's admin is not"
            )
        return role

    async def _is_replica(self, node: Node) -> bool:
        return await self._admins.run(node, "recovery check", self._in_recovery)

    async def _in_recovery(self, admin: _Admin) -> bool:
        row = await self._one(admin, IN_RECOVERY)
        return bool(row and row[0])

    async def _login(self, node: Node, account: str, password: Secret) -> None:
        """One fresh login as ``account``; ``VerificationFailed`` if it is refused."""
        endpoint = node.address.endpoint
        async with engine_call(endpoint, "verify login", timeout=self._timeout, classify=classify):
            try:
                conn = await self._connect(node.address, account, password)
            except psycopg.OperationalError as exc:
                if login_refused(exc):
                    raise VerificationFailed(
                        f"login to {endpoint} with the new credential failed"
                    ) from None
                raise
            await _close(conn)

    async def _await_replay(self, node: Node, account: str, password: Secret) -> None:
        """On a standby: wait until it replayed the primary's latest change, then log in."""

        async def replayed(admin: _Admin, lsn: str) -> bool:
            row = await self._one(admin, REPLAYED, (lsn,))
            return bool(row and row[0])

        await await_replay(
            node.address.endpoint,
            budget=self._replay_budget,
            lsn=self._positions.get(node.instance_id),
            replayed=lambda lsn: self._admins.run(
                node, "replay check", lambda admin: replayed(admin, lsn)
            ),
            login=lambda: self._login(node, account, password),
        )

    @staticmethod
    def _verifier(admin: _Admin, account: str, password: Secret) -> str:
        """The SCRAM-SHA-256 verifier of ``password``, computed by libpq without a round trip
        (the algorithm is given) and with SASLprep applied."""
        raw = admin.conn.pgconn.encrypt_password(
            password.reveal().encode(), account.encode(), b"scram-sha-256"
        )
        return raw.decode("ascii")

    async def _alter(self, node: Node, admin: _Admin, account: str, verifier: str | None) -> None:
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

    async def _record_position(self, node: Node, admin: _Admin) -> None:
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
