"""Unit tests of ``AdminPool`` with fake sessions (no I/O): a pooled session the server
dropped (a node restarted by a switchover) is replaced once within the same call, a session is
never reused for another address (the inventory reordered or moved a node), and neither a
fresh session's failure nor a refusal is retried."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from keyturn.core.errors import EngineRejected, EngineUnavailable
from keyturn.core.model import EngineKind, Node, parse_node_url
from keyturn.core.secrets import Secret
from keyturn.engines.admin_pool import AdminPool


@dataclass
class FakeSession:
    endpoint: str
    username: str
    password: Secret | None
    #: What the next queries raise, in order (then they answer).
    failures: list[Exception] = field(default_factory=list)
    closed: bool = False

    def alive(self) -> bool:
        return not self.closed

    async def aclose(self) -> None:
        self.closed = True

    async def query(self) -> str:
        if self.failures:
            raise self.failures.pop(0)
        return self.endpoint


@dataclass
class Servers:
    """Opens fake sessions and remembers them."""

    opened: list[FakeSession] = field(default_factory=list)
    #: What a session opened from now on fails its first query with (the server is down).
    down: Exception | None = None

    async def open(self, node: Node, password: Secret | None) -> FakeSession:
        session = FakeSession(node.address.endpoint, node.address.username, password)
        if self.down is not None:
            session.failures.append(self.down)
        self.opened.append(session)
        return session


def node(port: int, ordinal: int = 0) -> Node:
    url = f"postgresql://postgres:pw@127.0.0.1:{port}/postgres"
    return Node(
        instance_id="postgres-pool0001",
        ordinal=ordinal,
        address=parse_node_url(url, EngineKind.POSTGRES),
    )


def pool(servers: Servers) -> AdminPool[FakeSession]:
    return AdminPool(
        timeout=1.0, classify=lambda *_: None, open=servers.open, refused=lambda _: False
    )


async def query(admins: AdminPool[FakeSession], target: Node) -> str:
    return await admins.run(target, "query", lambda session: session.query())


async def test_a_dropped_pooled_session_is_replaced_within_the_call() -> None:
    servers = Servers()
    admins = pool(servers)
    assert await query(admins, node(5432)) == "127.0.0.1:5432"
    servers.opened[0].failures.append(ConnectionResetError())  # the server restarted
    assert await query(admins, node(5432)) == "127.0.0.1:5432"
    assert len(servers.opened) == 2 and servers.opened[0].closed
    assert await query(admins, node(5432)) == "127.0.0.1:5432"
    assert len(servers.opened) == 2


async def test_a_new_session_that_fails_is_not_retried() -> None:
    servers = Servers()
    admins = pool(servers)
    await query(admins, node(5432))
    servers.opened[0].failures.append(ConnectionResetError())
    servers.down = ConnectionAbortedError()
    with pytest.raises(EngineUnavailable):
        await query(admins, node(5432))
    assert len(servers.opened) == 2  # one new login, not more


async def test_a_refusal_on_a_pooled_session_is_not_retried() -> None:
    servers = Servers()
    admins = pool(servers)
    await query(admins, node(5432))
    servers.opened[0].failures.append(ValueError("refused"))
    with pytest.raises(EngineRejected):
        await query(admins, node(5432))
    assert len(servers.opened) == 1


async def test_a_session_is_never_reused_for_another_address() -> None:
    servers = Servers()
    admins = pool(servers)
    assert await query(admins, node(5432, ordinal=0)) == "127.0.0.1:5432"
    # The inventory now declares another server first (same instance, same ordinal): sessions
    # are kept per address, so each query reaches its own server.
    assert await query(admins, node(5433, ordinal=0)) == "127.0.0.1:5433"
    assert await query(admins, node(5433, ordinal=0)) == "127.0.0.1:5433"
    assert await query(admins, node(5432, ordinal=1)) == "127.0.0.1:5432"
    assert len(servers.opened) == 2


async def test_forget_leaves_a_session_in_use_alone() -> None:
    servers = Servers()
    admins = pool(servers)
    target = node(5432)
    await query(admins, target)
    session = servers.opened[0]
    gate = asyncio.Event()

    async def slow(found: FakeSession) -> str:
        await gate.wait()
        return await found.query()

    running = asyncio.create_task(admins.run(target, "query", slow))
    await asyncio.sleep(0)
    # A fleet job finished with the instance while a reset through the API runs on it.
    await admins.forget(target)
    assert not session.closed
    gate.set()
    assert await running == "127.0.0.1:5432"
    await admins.forget(target)
    assert session.closed
    assert await query(admins, target) == "127.0.0.1:5432"
    assert len(servers.opened) == 2
