"""Contract tests of ``RedisEngine`` account management against real redis-servers: creating an
ACL user (read-only or read-write, proven by what it may run), refusing to touch an existing
one, dropping it again, and checking a password against the engine's hashes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from redis.exceptions import NoPermissionError

from keyturn.core.errors import AccountExists, AccountNotFound, AccountsUnsupported
from keyturn.core.secrets import Secret
from keyturn.engines.redis import RedisEngine
from tests.contract.test_engine_redis import (
    TIMEOUT,
    acl_users,
    add_user,
    assert_wrongpass,
    node_of,
    raw,
    sha,
)
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.engine


@pytest.fixture
async def engine() -> AsyncIterator[RedisEngine]:
    driver = RedisEngine(timeout=TIMEOUT)
    yield driver
    await driver.close()


async def test_probe_tells_whether_the_account_exists(
    engine: RedisEngine, redis_server: RedisServer
) -> None:
    node = node_of(redis_server)
    assert (await engine.probe(node, "default")).account_exists is True
    assert (await engine.probe(node, "nobody")).account_exists is False
    assert (await engine.probe(node)).account_exists is None


async def test_create_read_write_account(engine: RedisEngine, redis_server: RedisServer) -> None:
    node = node_of(redis_server)
    result = await engine.create_account(node, "app_rw", Secret("Rw-pass-001"), read_only=False)
    assert result.persisted
    await engine.verify(node, "app_rw", Secret("Rw-pass-001"))
    async with raw(redis_server, "app_rw", "Rw-pass-001") as client:
        await client.set("k", "v")
        assert await client.get("k") == b"v"
        with pytest.raises(NoPermissionError):
            await client.execute_command("CONFIG", "GET", "port")
    assert [a.privilege for a in await engine.list_accounts(node) if a.name == "app_rw"] == ["rw"]


async def test_create_read_only_account(engine: RedisEngine, redis_server: RedisServer) -> None:
    node = node_of(redis_server)
    await engine.create_account(node, "app_ro", Secret("Ro-pass-001"), read_only=True)
    async with raw(redis_server, "app_ro", "Ro-pass-001") as client:
        assert await client.get("missing") is None
        with pytest.raises(NoPermissionError):
            await client.set("k", "v")
    assert [a.privilege for a in await engine.list_accounts(node) if a.name == "app_ro"] == ["r"]


async def test_existing_account_is_never_changed(
    engine: RedisEngine, redis_server: RedisServer
) -> None:
    await add_user(redis_server, "app", "on", ">Old-pass-1", "~*", "+@all")
    node = node_of(redis_server)
    with pytest.raises(AccountExists):
        await engine.create_account(node, "app", Secret("New-pass-1"), read_only=True)
    await assert_wrongpass(redis_server, "app", "New-pass-1")
    assert (await engine.snapshot(node, "app")).data["passwords"] == [sha("Old-pass-1")]


async def test_drop_account_and_drop_is_idempotent(
    engine: RedisEngine, redis_server: RedisServer
) -> None:
    node = node_of(redis_server)
    await engine.create_account(node, "gone", Secret("Gone-pass-1"), read_only=False)
    await engine.drop_account(node, "gone")
    assert "gone" not in await acl_users(redis_server)
    assert (await engine.drop_account(node, "gone")).note == "nothing to drop"


async def test_password_matches(engine: RedisEngine, redis_server: RedisServer) -> None:
    await add_user(redis_server, "two", "on", ">First-pass-1", ">Second-pass-2", "~*", "+@all")
    await add_user(redis_server, "free", "on", "nopass", "~*", "+@all")
    node = node_of(redis_server)
    assert await engine.password_matches(node, "two", Secret("First-pass-1"))
    assert await engine.password_matches(node, "two", Secret("Second-pass-2"))
    assert not await engine.password_matches(node, "two", Secret("Third-pass-3"))
    # A password-free account has no password to match, although any AUTH succeeds.
    assert not await engine.password_matches(node, "free", Secret("anything-1"))
    assert await engine.password_matches(node, "default", Secret(redis_server.password or ""))
    with pytest.raises(AccountNotFound):
        await engine.password_matches(node, "nobody", Secret("x"))


async def test_accounts_need_acl(
    engine: RedisEngine, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulated Redis 5 (version reported as 5): no ACL users to create; requirepass checks."""

    async def old_version(client: object, endpoint: str) -> str:
        return "5.0.14"

    monkeypatch.setattr("keyturn.engines.redis_admins.server_version", old_version)
    monkeypatch.setattr("keyturn.engines.redis.server_version", old_version)
    node = replace(node_of(redis_server))
    with pytest.raises(AccountsUnsupported):
        await engine.create_account(node, "app", Secret("Pass-word-1"), read_only=False)
    assert await engine.password_matches(node, "default", Secret(redis_server.password or ""))
    assert not await engine.password_matches(node, "default", Secret("wrong-pass-1"))
    info = await engine.probe(node, "app")
    assert (info.accounts, info.account_exists) == (False, False)
