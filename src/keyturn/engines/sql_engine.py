"""What the PostgreSQL and MySQL adapters share: the admin pool, plans, logins and sessions.

In both engines a change made on the primary replicates by itself, so their plans are the same
(``keyturn.engines.sql_plan``): discover the primary, write there, check everywhere. Both keep only
password verifiers, so whether a password is an account's current one is answered by one login
attempt, made the same way on both: a fresh connection within the engine timeout, a refused
login reported as ``VerificationFailed`` and nothing of the driver's message kept. Both pool one
admin connection per node (``SqlAdmin``), answer a probe the same way and list and end sessions
through a module of queries of their own. Each adapter creates and drops accounts its own way (on
the primary; replicas follow). An adapter subclasses ``SqlEngine``, sets ``engine_name``,
``_login_error`` and ``_sessions`` and implements ``_open``, ``_connect``, ``_close`` and
``_is_replica`` (and ``_login_user``/``_check_login`` where an account is not a login name).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from keyturn.core.engine_ports import CredentialSnapshot, EngineInfo, Session
from keyturn.core.errors import VerificationFailed
from keyturn.core.model import Instance, Node, NodeAddress, NodeRole
from keyturn.core.plans import Change, ChangePlan, Topology
from keyturn.core.secrets import Secret
from keyturn.engines import sql_plan
from keyturn.engines.admin_pool import AdminPool
from keyturn.engines.base import Classifier, check_timeout, engine_call


@dataclass(slots=True)
class SqlAdmin:
    """A pooled admin connection and what keyturn learnt when it logged in (an adapter's
    subclass adds what its checks need)."""

    conn: Any
    username: str
    password: Secret | None
    version: str

    def alive(self) -> bool:
        return not self.conn.closed

    async def aclose(self) -> None:
        raise NotImplementedError


A = TypeVar("A", bound=SqlAdmin)


class SessionQueries(Protocol):
    """The module that lists and ends an engine's client sessions on an admin connection."""

    async def listed(self, conn: Any, node: Node, account: str) -> list[Session]: ...

    async def ended(self, conn: Any, account: str, ids: Sequence[str]) -> int: ...


def probed(version: str, *, superuser: bool | None, exists: bool | None) -> EngineInfo:
    """What a probe of a SQL node reports: named accounts, none of them password-free."""
    return EngineInfo(
        version=version,
        accounts=True,
        password_free=None,
        superuser=superuser,
        account_exists=exists,
    )


class SqlEngine(Generic[A]):
    engine_name = "SQL"
    #: The driver's exception a refused login raises (``login_refused`` tells which).
    _login_error: type[Exception] = Exception
    #: The engine's session queries (``keyturn.engines.<engine>_sessions``).
    _sessions: SessionQueries

    def __init__(
        self,
        *,
        timeout: float,
        grace: float,
        classify: Classifier,
        refused: Callable[[BaseException], bool],
    ) -> None:
        self._timeout = check_timeout(timeout)
        #: How long ``verify`` on a replica may wait for the primary's change to arrive.
        self._replica_budget = self._timeout + max(0.0, grace)
        self._classify = classify
        self._refused = refused
        self._admins: AdminPool[A] = AdminPool(
            timeout=self._timeout, classify=classify, open=self._open, refused=refused
        )

    @property
    def timeout(self) -> float:
        return self._timeout

    # ------------------------------------------------------------------ adapter hooks

    async def _open(self, node: Node, password: Secret | None) -> A:
        """Log in as the node's admin and read what later checks need."""
        raise NotImplementedError

    async def _connect(self, address: NodeAddress, user: str, password: Secret | None) -> Any:
        """A new autocommit connection logged in as ``user``."""
        raise NotImplementedError

    async def _close(self, conn: Any) -> None:
        """Close ``conn`` quietly (cleanup never masks an operation's outcome)."""
        raise NotImplementedError

    async def _is_replica(self, node: Node) -> bool:
        """Whether ``node`` is a standby or replica (it is not written, only checked)."""
        raise NotImplementedError

    def _login_user(self, account: str) -> str:
        """The user name ``account`` logs in with."""
        return account

    async def _check_login(self, conn: Any, node: Node, account: str) -> None:
        """Check, on a fresh login's connection, that it is ``account``'s own."""

    # ------------------------------------------------------------------ shared operations

    async def _login(self, node: Node, account: str, password: Secret) -> None:
        """One fresh login as ``account``; ``VerificationFailed`` if it is refused."""
        endpoint = node.address.endpoint
        async with engine_call(
            endpoint, "verify login", timeout=self._timeout, classify=self._classify
        ):
            try:
                conn = await self._connect(node.address, self._login_user(account), password)
            except self._login_error as exc:
                if self._refused(exc):
                    raise VerificationFailed(
                        f"login to {endpoint} with the new credential failed"
                    ) from None
                raise
            try:
                await self._check_login(conn, node, account)
            finally:
                await self._close(conn)

    async def _verified(
        self,
        node: Node,
        account: str,
        password: Secret,
        *,
        standby: Callable[[], Awaitable[bool]],
        replay: Callable[[], Awaitable[None]],
    ) -> None:
        """``verify``'s shape on both engines: a fresh login on a primary; on a standby or
        replica (``standby()`` asks the node now), ``replay()``: wait until it applied the
        change, then log in. A node this task discovered as its primary is still asked, but its
        login runs alongside the question rather than after it (one round trip less): if the
        node turned into a standby meanwhile, a successful login proves the change all the same
        and a refused one is set aside for ``replay()``. Other nodes are asked first, so a
        lagging standby never sees a login that is bound to fail."""
        if node.role is not NodeRole.PRIMARY:
            if await standby():
                await replay()
            else:
                await self._login(node, account, password)
            return
        login = asyncio.ensure_future(self._login(node, account, password))
        try:
            is_standby = await standby()
        except BaseException:
            login.cancel()
            await _succeeded(login)
            raise
        if not is_standby:
            await login
            return
        if await _succeeded(login):
            return
        await replay()

    async def discover(self, instance: Instance) -> Topology:
        return await sql_plan.discover_primary(instance, self._is_replica)

    def plan(
        self, topology: Topology, change: Change, snapshots: Mapping[str, CredentialSnapshot]
    ) -> ChangePlan:
        return sql_plan.build_plan(self, topology, change, snapshots)  # type: ignore[arg-type]

    async def password_matches(self, node: Node, account: str, password: Secret) -> bool:
        # The engine keeps only verifiers: a login attempt is the one honest check. One
        # attempt, not verify's wait for a replica: this asks about the node as it is now.
        try:
            await self._login(node, account, password)
        except VerificationFailed:
            return False
        return True

    async def verify_logins(self, node: Node, account: str, passwords: Sequence[Secret]) -> None:
        for password in passwords:
            await self._login(node, account, password)

    def overlap_partner(self, account: str) -> str | None:
        return None

    def prepare(self, node: Node, account: str, password: Secret) -> None:
        return None  # MariaDB's and MySQL's hashes cost microseconds: made at the change

    async def list_sessions(self, node: Node, account: str) -> list[Session]:
        async def op(admin: A) -> list[Session]:
            return await self._sessions.listed(admin.conn, node, account)

        return await self._admins.run(node, "list sessions", op)

    async def end_sessions(self, node: Node, account: str, ids: Sequence[str]) -> int:
        async def op(admin: A) -> int:
            return await self._sessions.ended(admin.conn, account, ids)

        return await self._admins.run(node, "end sessions", op)

    async def forget(self, node: Node) -> None:
        await self._admins.forget(node)

    async def close(self) -> None:
        await self._admins.close()


async def _succeeded(task: asyncio.Future[None]) -> bool:
    """Wait for ``task`` without raising (its exception is retrieved): whether it succeeded."""
    await asyncio.wait((task,))
    return not task.cancelled() and task.exception() is None
