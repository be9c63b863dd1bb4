"""One pooled admin session per node, for every engine adapter (Redis, PostgreSQL,
MySQL/MariaDB).

It owns what the adapters would otherwise repeat: a lock per node, the bound and error
translation of ``engine_call``, rebuilding the session when the node's admin credential changed
or the connection died, and keyturn's lockout guard — when the registered admin password is
refused and a pending one exists (keyturn wrote it ahead of resetting the very account it logs
in with), the pending one is tried. Each adapter supplies how to open a session and how to
recognise a refused login. A session is either one connection (PostgreSQL, MySQL: one
operation at a time, the lock held around it) or a client that opens connections by itself as
it needs them (a Redis client's pool: operations run concurrently, only building the session is
serialised, and an operation whose new connection is refused rebuilds the session once).
Imports: ``keyturn.core`` and ``keyturn.engines.base``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Generic, Protocol, TypeVar

from keyturn.core.errors import EngineUnavailable
from keyturn.core.model import Node
from keyturn.core.secrets import Secret
from keyturn.engines.base import Classifier, engine_call

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


class AdminPool(Generic[S]):
    """Sessions by node key. ``open(node, password)`` logs in (and reads what the adapter
    needs, e.g. the server version) and closes what it opened if it fails; ``refused(exc)``
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
        self._sessions: dict[str, S] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def pooled(self, node: Node) -> S | None:
        """The node's session if one is open, without logging in."""
        return self._sessions.get(node.key)

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
        dropped, so the next operation reconnects."""
        lock = self._locks.setdefault(node.key, asyncio.Lock())
        whole: AbstractAsyncContextManager[object] = nullcontext() if self._concurrent else lock
        timeout = self.timeout + (budget or 0.0)
        try:
            async with (
                engine_call(
                    node.address.endpoint, action, timeout=timeout, classify=self._classify
                ),
                whole,
            ):
                try:
                    return await op(await self._session(node, lock))
                except Exception as exc:
                    if not self._stale(node, exc):
                        raise
                    await self.drop(node.key)
                    return await op(await self._session(node, lock))
        except EngineUnavailable:
            await self.drop(node.key)
            raise

    def _stale(self, node: Node, exc: Exception) -> bool:
        """Whether an operation failed because a new connection of a concurrent session was
        refused: the admin credential changed under it (keyturn reset its own account)."""
        return self._concurrent and node.pending_password is not None and self._refused(exc)

    async def drop(self, key: str) -> None:
        session = self._sessions.pop(key, None)
        if session is not None:
            await session.aclose()

    async def forget(self, node: Node) -> None:
        await self.drop(node.key)

    async def close(self) -> None:
        for key in list(self._sessions):
            await self.drop(key)
        self._locks.clear()

    async def _session(self, node: Node, lock: asyncio.Lock) -> S:
        """The node's session, (re)built when missing, dead or logged in with a credential
        the node no longer names. ``lock`` is taken here when operations do not hold it."""
        async with lock if self._concurrent else nullcontext():
            return await self._current(node)

    async def _current(self, node: Node) -> S:
        current = self._sessions.get(node.key)
        tried = candidates(node)
        if current is not None:
            if (
                current.alive()
                and current.username == node.address.username
                and current.password in tried
            ):
                return current
            await self.drop(node.key)
        for i, password in enumerate(tried):
            try:
                session = await self._open(node, password)
            except Exception as exc:
                if i + 1 < len(tried) and self._refused(exc):
                    log.info("admin login to %s: trying the pending credential", node.key)
                    continue
                raise
            self._sessions[node.key] = session
            return session
        raise AssertionError("unreachable: there is always one candidate")
