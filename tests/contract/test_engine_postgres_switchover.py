"""Contract tests of ``PostgresEngine``'s discovery and plan across a switchover, on a real
primary and hot standby (PostgreSQL 15): the primary is found by ``pg_is_in_recovery()``
whatever the declared order; after the standby is promoted and the old primary re-pointed at
it (``tests.support.postgres_server.switch_over``) the new primary is found, the plan writes
there only (the old primary's ``log_statement=all`` log shows no ``ALTER ROLE`` from then on)
and every node verifies, and undoing it brings the old password back everywhere. A stopped old
primary cannot say what it is: discovery fails with ``EngineUnavailable`` naming it (the
worker waits for it, bounded, and changes nothing meanwhile), until it returns as a standby.
Two primaries (a split brain) are refused with ``EngineRejected`` naming both, until one of
them is rebuilt as a standby of the other."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Sequence

import psycopg
import pytest
from psycopg import sql

from keyturn.core.errors import EngineRejected, EngineUnavailable
from keyturn.core.model import Instance, NodeRole, Product
from keyturn.engines.postgres import PostgresEngine
from tests.support.fixtures import PostgresServerFactory
from tests.support.plans import instance_of, planned
from tests.support.postgres_server import PostgresServer, switch_over

pytestmark = pytest.mark.engine

TIMEOUT = 1.0
GRACE = 0.5
#: A refused connection answers at once; slack for the test machine.
QUICK = TIMEOUT + 3.0
ROLE = "app"
USED: list[str] = []


def new_password() -> str:
    password = "Pg-" + secrets.token_urlsafe(12) + "s1!"
    USED.append(password)
    return password


@pytest.fixture
async def engine() -> AsyncIterator[PostgresEngine]:
    driver = PostgresEngine(timeout=TIMEOUT, replay_grace=GRACE)
    yield driver
    await driver.close()


@pytest.fixture
def pair(postgres_server_factory: PostgresServerFactory) -> list[PostgresServer]:
    """[primary, standby], the role ``app`` made on the primary and replayed by the standby."""
    primary = postgres_server_factory()
    standby = postgres_server_factory(standby_of=primary)
    return [primary, standby]


def instance(servers: Sequence[PostgresServer]) -> Instance:
    return instance_of(
        [server.url() for server in servers],
        product=Product.TENCENT_POSTGRES,
        instance_id="postgres-switch01",
    )


def endpoint(server: PostgresServer) -> str:
    return f"127.0.0.1:{server.port}"


def create_role(primary: PostgresServer, standby: PostgresServer, password: str) -> None:
    """``app`` with a verifier made by the client (no plaintext in the primary's log)."""
    with psycopg.connect(primary.url(), autocommit=True) as conn:
        verifier = conn.pgconn.encrypt_password(
            password.encode(), ROLE.encode(), b"scram-sha-256"
        ).decode()
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(ROLE), sql.Literal(verifier)
            )
        )
    standby.wait_replayed()


def logs_in(server: PostgresServer, password: str) -> bool:
    try:
        psycopg.connect(
            host="127.0.0.1",
            port=server.port,
            user=ROLE,
            password=password,
            dbname="postgres",
            connect_timeout=5,
        ).close()
    except psycopg.OperationalError:
        return False
    return True


async def primary_of(engine: PostgresEngine, servers: Sequence[PostgresServer]) -> str:
    """The endpoint discovery names primary (it comes first), checking the other roles."""
    topology = await engine.discover(instance(servers))
    assert [n.role for n in topology.nodes] == [NodeRole.PRIMARY, NodeRole.REPLICA]
    return topology.nodes[0].endpoint


async def test_postgres_discovery_ignores_the_declared_order(
    engine: PostgresEngine, pair: list[PostgresServer]
) -> None:
    primary, standby = pair
    assert await primary_of(engine, [primary, standby]) == endpoint(primary)
    assert await primary_of(engine, [standby, primary]) == endpoint(primary)


async def test_postgres_after_a_switchover_the_plan_writes_on_the_new_primary(
    engine: PostgresEngine, pair: list[PostgresServer]
) -> None:
    old_primary, new_primary = pair
    old, new = new_password(), new_password()
    create_role(old_primary, new_primary, old)
    # Discovered once before (pooled admin sessions to both, as a running keyturn has).
    assert await primary_of(engine, pair) == endpoint(old_primary)
    switch_over(old_primary, new_primary)
    written_before = len(old_primary.log_text())

    for declared in (pair, pair[::-1]):
        assert await primary_of(engine, declared) == endpoint(new_primary)
    run = await planned(engine, instance(pair), ROLE, new)
    assert [(s.endpoint, s.label) for s in run.plan.steps] == [
        (endpoint(new_primary), "set password on the primary")
    ]
    assert {c.endpoint for c in run.plan.checks} == {endpoint(s) for s in pair}
    await run.apply()
    await run.check()  # the demoted old primary waits until it replayed the change
    for server in pair:
        assert logs_in(server, new) and not logs_in(server, old)
    # Written on the new primary only: the old one got it by replaying the WAL.
    assert "ALTER ROLE" in new_primary.log_text()
    assert "ALTER ROLE" not in old_primary.log_text()[written_before:]

    await run.undo()
    old_primary.wait_replayed()
    for server in pair:
        assert logs_in(server, old) and not logs_in(server, new)
    assert "ALTER ROLE" not in old_primary.log_text()[written_before:]
    logs = old_primary.log_text() + new_primary.log_text()
    assert [p for p in USED if p in logs] == []


async def test_postgres_a_stopped_old_primary_blocks_discovery_until_it_returns(
    engine: PostgresEngine, pair: list[PostgresServer]
) -> None:
    old_primary, new_primary = pair
    old = new_password()
    create_role(old_primary, new_primary, old)
    assert await primary_of(engine, pair) == endpoint(old_primary)
    switch_over(old_primary, new_primary, demote=False)

    # It cannot say whether it is a primary: nothing may be planned, whatever the order.
    for declared in (pair, pair[::-1]):
        started = time.monotonic()
        with pytest.raises(EngineUnavailable) as caught:
            await engine.discover(instance(declared))
        assert time.monotonic() - started < QUICK
        assert endpoint(old_primary) in caught.value.message
    for server in pair[1:]:
        assert logs_in(server, old)

    # Back as a standby of the new primary: the instance has one primary again.
    old_primary.follow(new_primary)
    assert await primary_of(engine, pair) == endpoint(new_primary)
    run = await planned(engine, instance(pair), ROLE, new_password())
    assert [s.endpoint for s in run.plan.steps] == [endpoint(new_primary)]


async def test_postgres_two_primaries_are_refused(
    engine: PostgresEngine, pair: list[PostgresServer]
) -> None:
    primary, standby = pair
    old = new_password()
    create_role(primary, standby, old)
    standby.promote()  # the old primary still runs and takes writes: a split brain
    written = [len(server.log_text()) for server in pair]

    with pytest.raises(EngineRejected) as caught:
        await engine.discover(instance(pair))
    message = caught.value.message
    assert "exactly one primary" in message
    assert endpoint(primary) in message and endpoint(standby) in message
    with pytest.raises(EngineRejected):
        await planned(engine, instance(pair), ROLE, new_password())
    for server, offset in zip(pair, written, strict=True):
        assert logs_in(server, old)
        assert "ALTER ROLE" not in server.log_text()[offset:]

    # Resolved by rebuilding the old primary as a standby of the promoted one (their
    # timelines diverged): one primary again, and it is the promoted node.
    primary.follow(standby, rebuild=True)
    assert await primary_of(engine, pair) == endpoint(standby)
