"""The MySQL/MariaDB engine adapter: reads, changes, restores and verifies account passwords.

An account is one row of the grant tables, named ``"user@host"`` (``"app@%"``,
``"root@127.0.0.1"``); the name is split on its **last** ``@``, since user names may hold one,
and a name without ``@`` means host ``%``. Snapshots hold ``{"plugin": ..., "authentication_string":
...}`` as the server stores them (MariaDB: ``mysql.global_priv``'s JSON; MySQL:
``mysql.user``), which is enough to restore the row's credential exactly.

A new password never reaches the server in clear, so it is in neither the general log nor the
binary log (which ships to every replica): its ``mysql_native_password`` hash,
``"*" + HEX(SHA1(SHA1(password)))`` of the password's UTF-8 bytes, is computed here and sent as
``ALTER USER %s@%s IDENTIFIED VIA mysql_native_password USING %s`` (MariaDB) or ``... IDENTIFIED
WITH mysql_native_password AS %s`` (MySQL), with user, host and hash escaped by the driver as
query arguments. A reset switches the row to ``mysql_native_password``; ``restore`` puts back the
stored plugin and authentication string.

Before a change the target row is checked (``keyturn.engines.mysql_admin``: it exists, is not
locked and is not shadowed by a more specific row). MariaDB authentication chains
(``IDENTIFIED VIA a OR b``) are refused: a snapshot could not restore them. ``verify`` logs in
on a fresh TCP connection to the node's host and checks that ``CURRENT_USER()`` is the row that
was changed, so a ``'x'@'localhost'`` row (unix socket only with ``skip-name-resolve``) cannot be
verified from here. A probe for an account reports whether its row holds a global privilege that
controls the server (SUPER, CREATE USER), so the service can protect it.

Limitations: only MariaDB 10.11 is tested. On MySQL 8, ``caching_sha2_password`` verifiers
cannot be pre-hashed portably, so a reset needs the ``mysql_native_password`` plugin to be
active (``UnsupportedFeature`` otherwise) and moves the account to it; the restore of a
``caching_sha2_password`` string is untested. The client library (PyMySQL's scramble) sends a
password's bytes as Latin-1, so a password is handed to it as its UTF-8 bytes read as Latin-1:
the bytes on the wire are the UTF-8 ones that the hash was computed from.

TLS is used only when the node URL asks for it (``?ssl-mode=REQUIRED``, ``VERIFY_CA`` or
``VERIFY_IDENTITY``, with ``ssl-ca=FILE`` and, for a client certificate, ``ssl-cert=FILE`` and
``ssl-key=FILE``); one ``SSLContext`` per settings is built once and
reused, as PyMySQL would otherwise build one (about 30 ms) per connect. One autocommit admin
connection is kept per node, used under a per-node lock; it is rebuilt when the node's admin
credential changes, and a refused admin login is retried once with ``node.pending_password``.
No SQL text, password, hash or driver message is logged or copied into an error. This module
imports only ``keyturn.core``, ``keyturn.engines`` and aiomysql/PyMySQL.

``create_account`` makes ``CREATE USER user@host IDENTIFIED VIA|WITH mysql_native_password
USING|AS <hash>`` on the primary (the host as a reset names it, so ``app`` is ``'app'@'%'``),
refusing a row that exists or would be shadowed; the account gets no grant beyond ``USAGE``,
read-only or not (the operator grants it what it may touch). ``drop_account`` is its rollback.

A replica (a node with a replication source) is never written: ``set_password``,
``create_account`` and ``restore`` leave it to replication, and ``verify`` there first waits
until it applied the primary's change (``keyturn.engines.mysql_replication``), within the
engine timeout plus ``replica_grace`` seconds, else ``VerificationFailed`` naming the replica.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any, Final

import pymysql  # type: ignore[import-untyped]

from keyturn.core.engine_ports import (
    AccountInfo,
    ApplyResult,
    CredentialSnapshot,
    EngineInfo,
    SessionMark,
)
from keyturn.core.errors import (
    AccountExists,
    AccountNotFound,
    UnsupportedFeature,
    VerificationFailed,
)
from keyturn.core.model import EngineKind, Node, NodeAddress
from keyturn.core.plans import Change
from keyturn.core.secrets import Secret
from keyturn.engines import mysql_admin, mysql_overlap, mysql_sessions
from keyturn.engines.base import DEFAULT_TIMEOUT
from keyturn.engines.mysql_accounts import (
    DROP_USER,
    ER_CANNOT_USER,
    NATIVE_PLUGIN,
    alter_statement,
    check_creatable,
    classify,
    create_statement,
    errno_of,
    login_refused,
    native_hash,
    snapshot_data,
    snapshot_of,
    split_account,
    text,
)
from keyturn.engines.mysql_admin import MySQLAdmin, account_rows, target
from keyturn.engines.mysql_replication import (
    REPLICA_GRACE,
    REPLICATED,
    GtidPositions,
    await_replica,
    binlog_position,
    is_replica,
    wait_for,
)
from keyturn.engines.mysql_tls import TlsContexts
from keyturn.engines.sql_engine import SqlEngine, probed

#: The version and whether an account is a superuser (NULL: no such account), in one round trip.
_PROBE: Final = f"SELECT VERSION(), ({mysql_admin.SUPERUSER})"


class MySQLEngine(SqlEngine[MySQLAdmin]):
    """The ``Engine`` for MySQL and MariaDB. One instance serves every such node; ``timeout``
    bounds each operation (connect included) in seconds."""

    kind: EngineKind = EngineKind.MYSQL

    engine_name = "MySQL"
    _login_error = pymysql.err.MySQLError
    _sessions = mysql_sessions

    def __init__(
        self, *, timeout: float = DEFAULT_TIMEOUT, replica_grace: float = REPLICA_GRACE
    ) -> None:
        super().__init__(
            timeout=timeout, grace=replica_grace, classify=classify, refused=login_refused
        )
        self._tls = TlsContexts()
        self._positions = GtidPositions()

    # ------------------------------------------------------------------ Engine protocol

    async def probe(self, node: Node, account: str | None = None) -> EngineInfo:
        async def op(admin: MySQLAdmin) -> EngineInfo:
            # Always a round trip, even on a pooled connection: a probe is a health check.
            if account is None:
                row = await mysql_admin.one(admin.conn, "SELECT VERSION()")
            else:
                row = await mysql_admin.one(admin.conn, _PROBE, split_account(account))
            if row:
                admin.version = text(row[0])
                admin.mariadb = "mariadb" in admin.version.lower()
            superuser = exists = None
            if account is not None:
                superuser = None if row is None or row[1] is None else bool(row[1])
                exists = superuser is not None  # MAX over no row is NULL
            return probed(admin.version, superuser=superuser, exists=exists)

        return await self._admins.run(node, "probe", op)

    async def list_accounts(self, node: Node) -> list[AccountInfo]:
        async def op(admin: MySQLAdmin) -> list[AccountInfo]:
            rows = await account_rows(admin, None)
            return [
                AccountInfo(
                    name=row.name,
                    enabled=not row.locked,
                    password_free=row.plugin == NATIVE_PLUGIN and not row.auth,
                )
                for row in sorted(rows, key=lambda r: (r.user, r.host))
                if not row.role
            ]

        return await self._admins.run(node, "list accounts", op)

    async def snapshot(self, node: Node, account: str) -> CredentialSnapshot:
        async def op(admin: MySQLAdmin) -> CredentialSnapshot:
            return snapshot_of(account, await target(node, admin, account))

        return await self._admins.run(node, "snapshot", op)

    async def set_password(self, node: Node, account: str, password: Secret) -> ApplyResult:
        async def op(admin: MySQLAdmin) -> ApplyResult:
            if await self._replica(node, admin):
                # Read-only by role: the primary's ALTER USER reaches it through the binlog.
                return REPLICATED
            await target(node, admin, account)
            if not admin.native:
                raise UnsupportedFeature(
                    f"{node.address.endpoint} has no active mysql_native_password plugin"
                )
            await self._alter(node, admin, account, ((NATIVE_PLUGIN, native_hash(password)),))
            return ApplyResult(persisted=True)

        return await self._admins.run(node, "set password", op)

    async def add_password(self, node: Node, account: str, password: Secret) -> ApplyResult:
        async def op(admin: MySQLAdmin) -> ApplyResult:
            if await self._replica(node, admin):
                return REPLICATED
            row = await target(node, admin, account)
            found = mysql_overlap.addition(
                node, mariadb=admin.mariadb, version=admin.version, row=row, password=password
            )
            if found is not None:
                await self._alter(node, admin, account, found[0], statement=found[1])
            return ApplyResult(persisted=True)

        return await self._admins.run(node, "add password", op)

    async def keep_only(self, node: Node, account: str, password: Secret) -> ApplyResult:
        async def op(admin: MySQLAdmin) -> ApplyResult:
            if await self._replica(node, admin):
                return REPLICATED
            await target(node, admin, account)
            await self._alter(node, admin, account, ((NATIVE_PLUGIN, native_hash(password)),))
            if not admin.mariadb:
                await self._discard_old(node, admin, account)
            return ApplyResult(persisted=True)

        return await self._admins.run(node, "keep only one password", op)

    async def verify_overlap(
        self, node: Node, change: Change, snapshot: CredentialSnapshot | None
    ) -> None:
        if change.password is None:
            raise UnsupportedFeature("MySQL accounts have no password-free mode here")
        # A replica proves the new password only once it applied the change: verify waits.
        await self.verify(node, change.account, change.password)

        async def held(admin: MySQLAdmin) -> None:
            row = await target(node, admin, change.account)
            mysql_overlap.check_held(node, admin.mariadb, row, change, snapshot)

        await self._admins.run(node, "check the credentials held", held)

    async def session_mark(self, node: Node) -> SessionMark | None:
        async def op(admin: MySQLAdmin) -> SessionMark:
            # The run's start is read once per admin connection: one round trip less.
            marked = await mysql_sessions.mark(admin.conn, node, admin.run_started)
            admin.run_started = marked.started
            return marked

        return await self._admins.run(node, "mark sessions", op)

    async def set_password_free(self, node: Node, account: str) -> ApplyResult:
        raise UnsupportedFeature("MySQL accounts have no password-free mode here")

    async def restore(self, node: Node, snapshot: CredentialSnapshot) -> ApplyResult:
        alternatives = snapshot_data(snapshot)

        async def op(admin: MySQLAdmin) -> ApplyResult:
            if await self._replica(node, admin):
                return REPLICATED
            await self._alter(node, admin, snapshot.account, alternatives)
            if snapshot.data.get("secondary") is None and not admin.mariadb:
                await self._discard_old(node, admin, snapshot.account)
            return ApplyResult(persisted=True)

        return await self._admins.run(node, "restore", op)

    async def create_account(
        self, node: Node, account: str, password: Secret, *, read_only: bool
    ) -> ApplyResult:
        """``CREATE USER user@host`` (host as a reset names it: ``%`` when the account has no
        ``@``) with the native hash and no grant beyond ``USAGE``, on the primary; a replica
        gets it through the binlog (``keyturn.engines.mysql_accounts.create_statement``)."""
        user, host = split_account(account)
        endpoint = node.address.endpoint

        async def op(admin: MySQLAdmin) -> ApplyResult:
            if await self._replica(node, admin):
                return REPLICATED
            if not admin.native:
                raise UnsupportedFeature(f"{endpoint} has no active mysql_native_password plugin")
            check_creatable(user, host, await account_rows(admin, user), endpoint)
            args = (user, host, native_hash(password))
            if not await self._write(node, admin, create_statement(admin.mariadb), args):
                raise AccountExists(f"the account already exists on {endpoint}")
            return ApplyResult(persisted=True)

        return await self._admins.run(node, "create account", op)

    async def drop_account(self, node: Node, account: str) -> ApplyResult:
        async def op(admin: MySQLAdmin) -> ApplyResult:
            if await self._replica(node, admin):
                return REPLICATED
            if not await self._write(node, admin, DROP_USER, split_account(account)):
                return ApplyResult(persisted=True, note="nothing to drop")
            return ApplyResult(persisted=True)

        return await self._admins.run(node, "drop account", op)

    async def verify(self, node: Node, account: str, password: Secret | None) -> None:
        if password is None:
            raise UnsupportedFeature("MySQL accounts have no password-free mode here")

        async def wait(admin: MySQLAdmin, position: str, seconds: float) -> bool:
            return await wait_for(admin.conn, position, seconds, mariadb=admin.mariadb)

        async def replay() -> None:
            await await_replica(
                node.address.endpoint,
                budget=self._replica_budget,
                # A server-side wait shorter than the operation's bound, so it always answers.
                slice_seconds=max(0.1, self._timeout / 2),
                position=self._positions.get(node.instance_id),
                wait=lambda position, seconds: self._admins.run(
                    node, "replication wait", lambda admin: wait(admin, position, seconds)
                ),
                login=lambda: self._login(node, account, password),
            )

        await self._verified(
            node,
            account,
            password,
            standby=lambda: self._admins.run(
                node, "replication check", lambda a: self._replica(node, a)
            ),
            replay=replay,
        )

    # ------------------------------------------------------------------ internals

    async def _open(self, node: Node, password: Secret | None) -> MySQLAdmin:
        """Log in as the node's admin and read the server's flavour and auth plugins."""
        conn = await self._connect(node.address, node.address.username, password)
        return await mysql_admin.login_info(node, conn, password)

    async def _connect(self, address: NodeAddress, user: str, password: Secret | None) -> Any:
        return await mysql_admin.connect(
            address,
            user,
            password,
            timeout=self._timeout,
            ssl_context=self._ssl_context(address),
        )

    async def _close(self, conn: Any) -> None:
        await mysql_admin.close(conn)

    def _login_user(self, account: str) -> str:
        return split_account(account)[0]

    async def _check_login(self, conn: Any, node: Node, account: str) -> None:
        """The login must land on the very row that was changed."""
        user, host = split_account(account)
        row = await mysql_admin.one(conn, "SELECT CURRENT_USER()")
        got_user, got_host = split_account(text(row[0]) if row else "")
        if got_user != user or got_host.lower() != host.lower():
            raise VerificationFailed(
                f"the login to {node.address.endpoint} was taken by another account row"
            )

    async def _is_replica(self, node: Node) -> bool:
        async def op(admin: MySQLAdmin) -> bool:
            return await self._replica(node, admin)

        return await self._admins.run(node, "replication check", op)

    @staticmethod
    async def _replica(node: Node, admin: MySQLAdmin) -> bool:
        return await is_replica(admin.conn, node.key, mariadb=admin.mariadb, version=admin.version)

    def _ssl_context(self, address: NodeAddress) -> ssl.SSLContext | None:
        return self._tls.context(address)

    async def _alter(
        self,
        node: Node,
        admin: MySQLAdmin,
        account: str,
        alternatives: Sequence[tuple[str, str]],
        *,
        statement: str | None = None,
    ) -> None:
        """``ALTER USER user@host IDENTIFIED VIA|WITH plugin USING|AS auth [OR ...]`` (or
        ``statement`` with user and host as its first arguments); error 1396 (no such account)
        is ``AccountNotFound``."""
        endpoint = node.address.endpoint
        user, host = split_account(account)
        if statement is None:
            statement = alter_statement(admin.mariadb, alternatives)
            args: tuple[str, ...] = (user, host, *(auth for _, auth in alternatives))
        else:
            args = (user, host, *(auth for _, auth in alternatives))
        try:
            async with admin.conn.cursor() as cur:
                await cur.execute(statement, args)
            # What a replica must have applied before it can prove the change.
            position = await binlog_position(admin.conn, mariadb=admin.mariadb)
            self._positions.record(node.instance_id, position)
        except pymysql.err.MySQLError as exc:
            if errno_of(exc) == ER_CANNOT_USER:
                raise AccountNotFound(f"the account does not exist on {endpoint}") from None
            raise

    async def _write(
        self, node: Node, admin: MySQLAdmin, statement: str, args: tuple[str, ...]
    ) -> bool:
        """Run an account statement and record the binlog position a replica must reach;
        False on error 1396 (the account statement could not apply to that row)."""
        try:
            async with admin.conn.cursor() as cur:
                await cur.execute(statement, args)
        except pymysql.err.MySQLError as exc:
            if errno_of(exc) == ER_CANNOT_USER:
                return False
            raise
        position = await binlog_position(admin.conn, mariadb=admin.mariadb)
        self._positions.record(node.instance_id, position)
        return True

    async def _discard_old(self, node: Node, admin: MySQLAdmin, account: str) -> None:
        """MySQL 8.0.14+: drop a retained secondary password (a no-op without one)."""
        if mysql_overlap.dual_passwords(admin.mariadb, admin.version):
            await self._alter(node, admin, account, (), statement=mysql_overlap.DISCARD_OLD)
