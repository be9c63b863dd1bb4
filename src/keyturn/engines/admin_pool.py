"""One pooled admin session per node, for every engine adapter (Redis, PostgreSQL,
MySQL/MariaDB).

It owns what the adapters would otherwise repeat: a lock per node, the bound and error
translation of ``engine_call``, rebuilding the session when the node's address or admin
credential changed or the connection died (a pooled session the server dropped, because it
restarted or was promoted or demoted, gets one new login within the same bound, so a node
restarted by a switchover answers its first query), and keyturn's lockout guard: when the
registered admin password is refused and a pending one exists (keyturn wrote it ahead of
resetting the very account it logs in with), the pending one is tried. Each adapter supplies
how to open a session and how to recognise a refused login. A session is either one
connection (PostgreSQL, MySQL: one operation at a time, the lock held around it) or a client
that opens connections by itself as it needs them (a Redis client's pool: operations run
concurrently, only building the session is serialised, and an operation whose new connection is
refused rebuilds the session once). Imports: ``keyturn.core`` and ``keyturn.engines.base``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Generic, Protocol, TypeVar

from keyturn.core.errors import DomainError, EngineUnavailable
from keyturn.core.model import Node, NodeAddress
from keyturn.core.secrets import Secret
from keyturn.engines.base import Classifier, engine_call, translate

log = logging.getLogger(__name__)
T = TypeVar("T")


class Session(Protocol):
    """An open admin connection (or client) and the credential it logged in with."""

    username: str
    password: Secret | None

    def alive(self) -> bool: ...

    async def aclose(self) -> None: ...


S = TypeVar("S", bound=Session)


def candidates(node: Node) -> list[Secret | None]:
    """Admin passwords to try in order: the registered one, then the pending one."""
    found: list[Secret | None] = [node.address.password]
    if node.pending_password is not None and node.pending_password != node.address.password:
        found.append(node.pending_password)
    return found


def _address(node: Node) -> NodeAddress:
    """What a session is a session of: the node's address without the password (which is
    checked on its own, against the pending one too)."""
    return replace(node.address, password=None)


def pool_key(node: Node) -> str:
    """Sessions are kept per instance and address, never per position: the inventory may list
    an instance's nodes in another order, and discovered nodes (a cluster's, a sentinel's
    replicas) are numbered by discovery, so a query must never reach another server than its
    node's."""
    return f"{node.instance_id}@{node.endpoint}"


@dataclass(frozen=True, slots=True)
class _Pooled(Generic[S]):
    session: S
    address: NodeAddress


class AdminPool(Generic[S]):
    """Sessions by instance and address (``pool_key``). ``open(node, password)`` logs in
    (and reads what the adapter needs, e.g. the server version) and closes what it opened if
    it fails; ``refused(exc)``
    says whether ``exc`` is a login refusal. ``concurrent`` says the session opens connections
    by itself and may serve several operations at once (see the module docstring)."""

    def __init__(
        self,
        *,
        timeout: float,
        classify: Classifier,
        open: Callable[[Node, Secret | None], Awaitable[S]],
        refused: Callable[[BaseException], bool],
        concurrent: bool = False,
    ) -> None:
        self.timeout = timeout
        self._classify = classify
        self._open = open
        self._refused = refused
        self._concurrent = concurrent
        self._sessions: dict[str, _Pooled[S]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        #: Operations under way per key (waiting for the lock included): ``forget`` leaves
        #: a session alone while any runs.
        self._busy: dict[str, int] = {}

    def pooled(self, node: Node) -> S | None:
        """The node's session if one is open, without logging in."""
        found = self._sessions.get(pool_key(node))
        return found.session if found is not None and found.address == _address(node) else None

    async def run(
        self,
        node: Node,
        action: str,
        op: Callable[[S], Awaitable[T]],
        *,
        budget: float | None = None,
    ) -> T:
        """Run ``op`` on the node's session, bounded (by the timeout plus ``budget`` seconds
        for operations that wait) and with errors translated. A session found broken is
        dropped, so the next operation reconnects; a pooled one that failed because the server
        dropped it, or (concurrent sessions) whose new connection was refused because keyturn
        reset its own login, is rebuilt once within the same bound. Every operation run here
        may be repeated (reads, and writes that set an end state)."""
        key = pool_key(node)
        endpoint = node.address.endpoint
        lock = self._locks.setdefault(key, asyncio.Lock())
        whole: AbstractAsyncContextManager[object] = nullcontext() if self._concurrent else lock
        timeout = self.timeout + (budget or 0.0)
        self._busy[key] = self._busy.get(key, 0) + 1
        try:
            async with (
                engine_call(endpoint, action, timeout=timeout, classify=self._classify),
                whole,
            ):
                session, pooled = await self._session(node, lock)
                try:
                    return await op(session)
                except DomainError:
                    raise
                except Exception as exc:
                    if not (
                        self._stale(node, exc) or (pooled and self._lost(exc, endpoint, action))
                    ):
                        raise
                    log.info("admin session to %s is stale; logging in again", key)
                    await self.drop(key)
                    session, _ = await self._session(node, lock)
                    return await op(session)
        except EngineUnavailable:
            await self.drop(key)
            raise
        finally:
            if (left := self._busy[key] - 1) > 0:
                self._busy[key] = left
            else:
                del self._busy[key]

    def _lost(self, exc: Exception, endpoint: str, action: str) -> bool:
        """Whether an operation on a pooled session failed because the server dropped it."""
        return isinstance(translate(exc, endpoint, action, self._classify), EngineUnavailable)

    def _stale(self, node: Node, exc: Exception) -> bool:
        """Whether an operation failed because a new connection of a concurrent session was
        refused: the admin credential changed under it (keyturn reset its own account)."""
        return self._concurrent and node.pending_password is not None and self._refused(exc)

    async def drop(self, key: str) -> None:
        pooled = self._sessions.pop(key, None)
        if pooled is not None:
            await pooled.session.aclose()

    async def forget(self, node: Node) -> None:
        """Close the node's session unless an operation is using or waiting for it (then it
        stays pooled: closing it would interrupt that operation, e.g. a reset through the API
        on the instance a fleet job has just finished with)."""
        key = pool_key(node)
        if not self._busy.get(key):
            await self.drop(key)

    async def close(self) -> None:
        for key in list(self._sessions):
            await self.drop(key)
        self._locks.clear()

    async def _session(self, node: Node, lock: asyncio.Lock) -> tuple[S, bool]:
        """The node's session, (re)built when missing, dead, of another address or logged in
        with a credential the node no longer names; and whether it was pooled (rather than
        opened now). ``lock`` is taken here when operations do not hold it."""
        async with lock if self._concurrent else nullcontext():
            return await self._current(node)

    async def _current(self, node: Node) -> tuple[S, bool]:
        key = pool_key(node)
        current = self._sessions.get(key)
        tried = candidates(node)
        address = _address(node)
        if current is not None:
            session = current.session
            # The address holds the admin user; the password may also be the pending one.
            if current.address == address and session.alive() and session.password in tried:
                return session, True
            await self.drop(key)
        for i, password in enumerate(tried):
            try:
                session = await self._open(node, password)
            except Exception as exc:
                if i + 1 < len(tried) and self._refused(exc):
                    log.info("admin login to %s: trying the pending credential", key)
                    continue
                raise
            self._sessions[key] = _Pooled(session, address)
            return session, False
        raise AssertionError("unreachable: there is always one candidate")
