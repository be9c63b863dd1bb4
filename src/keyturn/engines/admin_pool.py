"""One pooled admin session per node, for the engine adapters that hold a single connection
(PostgreSQL, MySQL/MariaDB).

It owns what both would otherwise repeat: a lock per node (one operation at a time on the
connection), the bound and error translation of ``engine_call``, rebuilding the session when
the node's address or admin credential changed or the server dropped the connection (one new
login within the same bound, so a node restarted by a switchover answers its first query), and
keyturn's lockout guard — when the registered admin password is refused and a pending one
exists (keyturn wrote it ahead of resetting the very account it logs in with), the pending one
is tried. Each adapter supplies how to open a session and how to recognise a refused login.
Imports: ``keyturn.core`` and ``keyturn.engines.base``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Generic, Protocol, TypeVar

from keyturn.core.errors import DomainError, EngineUnavailable
from keyturn.core.model import Node, NodeAddress
from keyturn.core.secrets import Secret
from keyturn.engines.base import Classifier, engine_call, translate

log = logging.getLogger(__name__)
T = TypeVar("T")


class Session(Protocol):
    """An open admin connection and the credential it logged in with."""

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


@dataclass(frozen=True, slots=True)
class _Pooled(Generic[S]):
    session: S
    address: NodeAddress


class AdminPool(Generic[S]):
    """Sessions by node key (instance and declared ordinal), each reused only for the address
    it was opened to: the inventory may list the same instance's nodes in another order or
    move one (after a switchover, the new primary is often declared first), and a query
    must never reach another server than its node's. ``open(node, password)`` logs in (and
    reads what the adapter needs, e.g. the server version); ``refused(exc)`` says whether
    ``exc`` is a login refusal."""

    def __init__(
        self,
        *,
        timeout: float,
        classify: Classifier,
        open: Callable[[Node, Secret | None], Awaitable[S]],
        refused: Callable[[BaseException], bool],
    ) -> None:
        self._timeout = timeout
        self._classify = classify
        self._open = open
        self._refused = refused
        self._sessions: dict[str, _Pooled[S]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def run(self, node: Node, action: str, op: Callable[[S], Awaitable[T]]) -> T:
        """Run ``op`` on the node's session, under its lock, bounded and with errors
        translated. A session found broken is dropped. When a pooled session fails because
        the server dropped it (it restarted, was promoted or demoted, or closed an idle
        connection), ``op`` runs once more on a new session, within the same bound: the
        node answers now, and only a node that does not is unavailable. Every operation run
        here may be repeated (reads, and writes that set an end state)."""
        endpoint = node.address.endpoint
        lock = self._locks.setdefault(node.key, asyncio.Lock())
        try:
            async with (
                engine_call(endpoint, action, timeout=self._timeout, classify=self._classify),
                lock,
            ):
                session, pooled = await self._session(node)
                if pooled:
                    try:
                        return await op(session)
                    except DomainError:
                        raise
                    except Exception as exc:
                        error = translate(exc, endpoint, action, self._classify)
                        if not isinstance(error, EngineUnavailable):
                            raise
                        log.info("admin session to %s was lost; logging in again", node.key)
                        await self.drop(node.key)
                        session, _ = await self._session(node)
                return await op(session)
        except EngineUnavailable:
            await self.drop(node.key)
            raise

    async def drop(self, key: str) -> None:
        pooled = self._sessions.pop(key, None)
        if pooled is not None:
            await pooled.session.aclose()

    async def forget(self, node: Node) -> None:
        await self.drop(node.key)

    async def close(self) -> None:
        for key in list(self._sessions):
            await self.drop(key)
        self._locks.clear()

    async def _session(self, node: Node) -> tuple[S, bool]:
        """The node's session, and whether it was pooled (rather than opened now)."""
        current = self._sessions.get(node.key)
        tried = candidates(node)
        address = _address(node)
        if current is not None:
            session = current.session
            # The address holds the admin user; the password may also be the pending one.
            if current.address == address and session.alive() and session.password in tried:
                return session, True
            await self.drop(node.key)
        for i, password in enumerate(tried):
            try:
                session = await self._open(node, password)
            except Exception as exc:
                if i + 1 < len(tried) and self._refused(exc):
                    log.info("admin login to %s: trying the pending credential", node.key)
                    continue
                raise
            self._sessions[node.key] = _Pooled(session, address)
            return session, False
        raise AssertionError("unreachable: there is always one candidate")
