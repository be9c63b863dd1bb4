"""Contract tests of ``PostgresEngine`` on a real primary and a hot standby streaming from it
(PostgreSQL 15, ``pg_basebackup -R``): the primary is changed, the standby is never written
(its ``log_statement=all`` log holds no ``ALTER ROLE``), ``verify`` on the standby waits until
it replayed the change and then proves the login, a restore comes back on both, and a standby
that lags, is stopped, or whose position keyturn forgot (a restart) fails or recovers within
a bound. Every claim is checked from outside with raw psycopg logins too."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg import sql

from keyturn.core.errors import DomainError, EngineUnavailable, VerificationFailed
from keyturn.core.model import EngineKind, Node, parse_node_url
from keyturn.core.secrets import Secret
from keyturn.engines.postgres import PostgresEngine
from tests.support.fixtures import PostgresServerFactory
from tests.support.logins import can_login_postgres
from tests.support.postgres_server import PostgresServer

pytestmark = pytest.mark.engine

TIMEOUT = 1.0
GRACE = 0.5
#: verify's bound on a standby, and slack for the test machine.
BUDGET = TIMEOUT + GRACE
SLACK = 3.0
USED: list[str] = []


def new_password() -> str:
    password = "Pg-" + secrets.token_urlsafe(12) + "a9!"
    USED.append(password)
    return password


def make_engine() -> PostgresEngine:
    return PostgresEngine(timeout=TIMEOUT, replay_grace=GRACE)


@pytest.fixture
async def engine() -> AsyncIterator[PostgresEngine]:
    driver = make_engine()
    yield driver
    await driver.close()


@pytest.fixture
def pair(postgres_server_factory: PostgresServerFactory) -> list[PostgresServer]:
    primary = postgres_server_factory()
    standby = postgres_server_factory(standby_of=primary)
    return [primary, standby]


def nodes_of(servers: list[PostgresServer]) -> list[Node]:
    return [
        Node(
            instance_id="postgres-repl0001",
            ordinal=i,
            address=parse_node_url(server.url(), EngineKind.POSTGRES),
        )
        for i, server in enumerate(servers)
    ]


def create_role(primary: PostgresServer, name: str, password: str) -> None:
    """A login role made on the primary with a verifier (so no plaintext reaches its log)."""
    with psycopg.connect(primary.url(), autocommit=True) as conn:
        verifier = conn.pgconn.encrypt_password(
            password.encode(), name.encode(), b"scram-sha-256"
        ).decode()
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(verifier)
            )
        )


def logs_in(server: PostgresServer, user: str, password: str) -> bool:
    return can_login_postgres(server.port, user, password)


def verifier_on(server: PostgresServer, role: str) -> object:
    return server.sql_value("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))


def assert_standby_untouched(pair: list[PostgresServer]) -> None:
    """The standby's log (``log_statement=all``) shows what keyturn sent it: reads only; and
    no plaintext password is in either log."""
    primary_log, standby_log = pair[0].log_text(), pair[1].log_text()
    assert "ALTER ROLE" in primary_log
    assert "ALTER ROLE" not in standby_log
    assert [p for p in USED if p in primary_log or p in standby_log] == []


async def test_snapshot_and_writes_on_a_standby(
    engine: PostgresEngine, pair: list[PostgresServer]
) -> None:
    primary, standby = pair
    old = new_password()
    create_role(primary, "app", old)
    standby.wait_replayed()
    nodes = nodes_of(pair)
    snapshots = [await engine.snapshot(node, "app") for node in nodes]
    assert snapshots[1].data["verifier"] == snapshots[0].data["verifier"]
    assert snapshots[1].data["verifier"] == verifier_on(standby, "app")
    # On the standby alone: nothing is written, the result says why.
    result = await engine.set_password(nodes[1], "app", Secret(new_password()))
    assert result.persisted and result.note == "replicated from the primary"
    result = await engine.restore(nodes[1], snapshots[1])
    assert result.note == "replicated from the primary"
    assert logs_in(standby, "app", old) and logs_in(primary, "app", old)
    assert "ALTER ROLE" not in standby.log_text()
    # The primary is recognised as one, and its probe and listing work on the standby too.
    assert (await engine.set_password(nodes[0], "app", Secret(new_password()))).note == ""
    assert (await engine.probe(nodes[1])).version.startswith("15.")
    assert "app" in {a.name for a in await engine.list_accounts(nodes[1])}


async def test_reset_verify_and_restore_on_primary_and_standby(
    engine: PostgresEngine, pair: list[PostgresServer]
) -> None:
    primary, standby = pair
    old, new = new_password(), new_password()
    create_role(primary, "app", old)
    standby.wait_replayed()
    nodes = nodes_of(pair)
    snapshots = [await engine.snapshot(node, "app") for node in nodes]
    # As the worker does: apply on every node (primary first), then verify every node. The
    # standby is verified right away: verify waits for its replay.
    results = [await engine.set_password(node, "app", Secret(new)) for node in nodes]
    assert [r.note for r in results] == ["", "replicated from the primary"]
    for node in nodes:
        await engine.verify(node, "app", Secret(new))
    for server in pair:
        assert logs_in(server, "app", new)
        assert not logs_in(server, "app", old)
    assert await engine.password_matches(nodes[1], "app", Secret(new))

    for node in nodes:
        await engine.restore(node, snapshots[node.ordinal])
    for node in nodes:
        await engine.verify(node, "app", Secret(old))
    for server in pair:
        assert logs_in(server, "app", old)
        assert not logs_in(server, "app", new)
        assert verifier_on(server, "app") == snapshots[0].data["verifier"]
    assert_standby_untouched(pair)


async def test_a_lagging_standby_fails_verification_in_bounded_time(
    engine: PostgresEngine, pair: list[PostgresServer]
) -> None:
    primary, standby = pair
    old, new = new_password(), new_password()
    create_role(primary, "app", old)
    standby.wait_replayed()
    nodes = nodes_of(pair)
    snapshot = await engine.snapshot(nodes[0], "app")
    standby.set_replay_paused(True)
    for node in nodes:
        await engine.set_password(node, "app", Secret(new))
    await engine.verify(nodes[0], "app", Secret(new))
    started = time.monotonic()
    with pytest.raises(VerificationFailed) as caught:
        await engine.verify(nodes[1], "app", Secret(new))
    elapsed = time.monotonic() - started
    assert BUDGET - 0.1 <= elapsed <= BUDGET + SLACK
    assert nodes[1].address.endpoint in caught.value.message
    assert "did not replay" in caught.value.message
    # The worker's rollback: restore the primary, the standby follows once it replays.
    await engine.restore(nodes[0], snapshot)
    standby.set_replay_paused(False)
    await engine.verify(nodes[1], "app", Secret(old))
    assert logs_in(standby, "app", old) and not logs_in(standby, "app", new)
    assert_standby_untouched(pair)


async def test_a_stopped_standby_fails_quickly(
    engine: PostgresEngine, pair: list[PostgresServer]
) -> None:
    primary, standby = pair
    create_role(primary, "app", new_password())
    standby.wait_replayed()
    nodes = nodes_of(pair)
    await engine.snapshot(nodes[1], "app")  # a pooled admin connection, soon dead
    new = Secret(new_password())
    await engine.set_password(nodes[0], "app", new)
    standby.stop()
    for call in (
        lambda: engine.verify(nodes[1], "app", new),
        lambda: engine.set_password(nodes[1], "app", new),
        lambda: engine.verify(nodes[1], "app", new),
    ):
        started = time.monotonic()
        with pytest.raises(DomainError) as caught:
            await call()
        assert time.monotonic() - started < BUDGET + SLACK
        assert isinstance(caught.value, EngineUnavailable | VerificationFailed)
        assert nodes[1].address.endpoint in caught.value.message


async def test_without_a_known_position_the_login_is_retried(
    pair: list[PostgresServer],
) -> None:
    """After a keyturn restart (a new engine) nothing says how far the standby must replay:
    the fresh login is retried within the same bound."""
    primary, standby = pair
    old, new = new_password(), new_password()
    create_role(primary, "app", old)
    standby.wait_replayed()
    nodes = nodes_of(pair)
    standby.set_replay_paused(True)
    first = make_engine()
    try:
        await first.set_password(nodes[0], "app", Secret(new))
    finally:
        await first.close()

    restarted = make_engine()
    try:
        started = time.monotonic()
        with pytest.raises(VerificationFailed) as caught:
            await restarted.verify(nodes[1], "app", Secret(new))
        assert BUDGET - 0.1 <= time.monotonic() - started <= BUDGET + SLACK
        assert nodes[1].address.endpoint in caught.value.message

        # Replay resumes while verify retries: it succeeds.
        timer = threading.Timer(0.4, standby.set_replay_paused, (False,))
        timer.start()
        try:
            started = time.monotonic()
            await restarted.verify(nodes[1], "app", Secret(new))
            assert 0.3 <= time.monotonic() - started <= BUDGET + SLACK
        finally:
            timer.join()
    finally:
        await restarted.close()
    assert logs_in(standby, "app", new) and not logs_in(standby, "app", old)
    assert_standby_untouched(pair)
