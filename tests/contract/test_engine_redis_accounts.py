"""Contract tests of ``RedisEngine`` account management against real redis-servers: creating an
ACL user (read-only or read-write, proven command by command: what a client needs works, no
administration and nothing that disturbs other clients), refusing to touch an existing one,
dropping it again, checking a password against the engine's hashes, and telling superusers
(every command, or the commands that change users and configuration) from the rest."""

from __future__ import annotations

from dataclasses import replace

import pytest
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError

from keyturn.core.errors import AccountExists, AccountNotFound, AccountsUnsupported
from keyturn.core.secrets import Secret
from keyturn.engines.redis import RedisEngine
from tests.support.redis_admin import (
    acl_users,
    add_user,
    assert_wrongpass,
    pretend_redis_5,
    raw,
    redis_node,
    sha,
)
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.engine


async def test_probe_tells_whether_the_account_exists(
    redis_engine: RedisEngine, redis_server: RedisServer
) -> None:
    node = redis_node(redis_server)
    assert (await redis_engine.probe(node, "default")).account_exists is True
    assert (await redis_engine.probe(node, "nobody")).account_exists is False
    assert (await redis_engine.probe(node)).account_exists is None


#: What every account may run: a client's connection commands.
CLIENT_NEEDS: list[tuple[str, ...]] = [
    ("PING",),
    ("ECHO", "hi"),
    ("AUTH", "{user}", "{password}"),
    ("HELLO", "2", "AUTH", "{user}", "{password}"),
    ("SELECT", "0"),
    ("CLIENT", "SETNAME", "app"),
    ("CLIENT", "GETNAME"),
    ("CLIENT", "ID"),
    ("CLIENT", "INFO"),
    ("MULTI",),
    ("DISCARD",),
]
#: Refused to every account, run for real (were one allowed, it would answer, not NOPERM).
REFUSED: list[tuple[str, ...]] = [
    ("CLIENT", "KILL", "ID", "999999"),
    ("CLIENT", "PAUSE", "1"),
    ("CLIENT", "LIST"),
    ("CLIENT", "NO-EVICT", "on"),
    ("CONFIG", "GET", "port"),
    ("FLUSHALL",),
    ("KEYS", "*"),
]
#: Refused to every account too, asked with ACL DRYRUN (the server's own decision, without
#: running them): administration, and whatever disturbs other clients or the server.
NEVER: list[tuple[str, ...]] = [
    *REFUSED,
    ("CLIENT", "UNPAUSE"),
    ("CLIENT", "UNBLOCK", "1"),
    ("CONFIG", "SET", "maxmemory", "1"),
    ("ACL", "SETUSER", "intruder"),
    ("ACL", "LIST"),
    ("DEBUG", "SLEEP", "0"),
    ("MONITOR",),
    ("INFO",),
    ("SHUTDOWN",),
    ("FLUSHDB",),
    ("SWAPDB", "0", "1"),
    ("MODULE", "LOAD", "x"),
    ("SLOWLOG", "GET"),
    ("REPLICAOF", "NO", "ONE"),
    ("SAVE",),
    ("BGSAVE",),
]


async def refusals(
    client: Redis, commands: list[tuple[str, ...]], user: str, password: str
) -> list[str]:
    """The commands of ``commands`` the server refused with NOPERM (arguments filled in)."""
    refused = []
    for command in commands:
        try:
            await client.execute_command(*(a.format(user=user, password=password) for a in command))
        except NoPermissionError:
            refused.append(" ".join(command))
    return refused


async def allowed_by_dryrun(server: RedisServer, user: str) -> list[str]:
    """The commands of ``NEVER`` that ``ACL DRYRUN`` says ``user`` may run."""
    async with raw(server, "default", server.password) as admin:
        replies = [await admin.execute_command("ACL", "DRYRUN", user, *c) for c in NEVER]
    return [" ".join(c) for c, reply in zip(NEVER, replies, strict=True) if reply == b"OK"]


async def test_create_read_write_account(
    redis_engine: RedisEngine, redis_server: RedisServer
) -> None:
    node = redis_node(redis_server)
    result = await redis_engine.create_account(
        node, "app_rw", Secret("Rw-pass-001"), read_only=False
    )
    assert result.persisted
    await redis_engine.verify(node, "app_rw", Secret("Rw-pass-001"))
    async with raw(redis_server, "app_rw", "Rw-pass-001") as client:
        await client.set("k", "v")
        assert await client.get("k") == b"v"
        assert await client.delete("k") == 1
        assert await refusals(client, CLIENT_NEEDS, "app_rw", "Rw-pass-001") == []
        refused = await refusals(client, REFUSED, "app_rw", "Rw-pass-001")
        assert refused == [" ".join(c) for c in REFUSED]
    assert await allowed_by_dryrun(redis_server, "app_rw") == []
    assert [a.privilege for a in await redis_engine.list_accounts(node) if a.name == "app_rw"] == [
        "rw"
    ]
    assert (await redis_engine.probe(node, "app_rw")).superuser is False


async def test_create_read_only_account(
    redis_engine: RedisEngine, redis_server: RedisServer
) -> None:
    node = redis_node(redis_server)
    await redis_engine.create_account(node, "app_ro", Secret("Ro-pass-001"), read_only=True)
    async with raw(redis_server, "app_ro", "Ro-pass-001") as client:
        assert await client.get("missing") is None
        assert (await client.scan(0))[0] == 0
        assert await refusals(client, CLIENT_NEEDS, "app_ro", "Ro-pass-001") == []
        writes = [("SET", "k", "v"), ("DEL", "k"), ("EXPIRE", "k", "1"), ("SORT", "k")]
        refused = await refusals(client, [*writes, *REFUSED], "app_ro", "Ro-pass-001")
        assert refused == [" ".join(c) for c in [*writes, *REFUSED]]
    assert await allowed_by_dryrun(redis_server, "app_ro") == []
    assert [a.privilege for a in await redis_engine.list_accounts(node) if a.name == "app_ro"] == [
        "r"
    ]
    assert (await redis_engine.probe(node, "app_ro")).superuser is False


async def test_probe_tells_superusers(redis_engine: RedisEngine, redis_server: RedisServer) -> None:
    """Every command, or any of the commands that change users, configuration or load code
    (through a selector too), makes a superuser; a data account with all else is none."""
    await add_user(redis_server, "everything", "on", ">Pass-word-1", "~*", "+@all")
    await add_user(redis_server, "acl_only", "on", ">Pass-word-1", "-@all", "+acl|setuser")
    await add_user(redis_server, "config_only", "on", ">Pass-word-1", "-@all", "+config")
    await add_user(redis_server, "selector", "on", ">Pass-word-1", "-@all", "(+@admin)")
    await add_user(redis_server, "data", "on", ">Pass-word-1", "~*", "+@all", "-@dangerous")
    node = redis_node(redis_server)
    found = {
        name: (await redis_engine.probe(node, name)).superuser
        for name in ("default", "everything", "acl_only", "config_only", "selector", "data")
    }
    assert found == {
        "default": True,
        "everything": True,
        "acl_only": True,
        "config_only": True,
        "selector": True,
        "data": False,
    }
    assert (await redis_engine.probe(node, "nobody")).superuser is None
    assert (await redis_engine.probe(node)).superuser is None


async def test_existing_account_is_never_changed(
    redis_engine: RedisEngine, redis_server: RedisServer
) -> None:
    await add_user(redis_server, "app", "on", ">Old-pass-1", "~*", "+@all")
    node = redis_node(redis_server)
    with pytest.raises(AccountExists):
        await redis_engine.create_account(node, "app", Secret("New-pass-1"), read_only=True)
    await assert_wrongpass(redis_server, "app", "New-pass-1")
    assert (await redis_engine.snapshot(node, "app")).data["passwords"] == [sha("Old-pass-1")]


async def test_drop_account_and_drop_is_idempotent(
    redis_engine: RedisEngine, redis_server: RedisServer
) -> None:
    node = redis_node(redis_server)
    await redis_engine.create_account(node, "gone", Secret("Gone-pass-1"), read_only=False)
    await redis_engine.drop_account(node, "gone")
    assert "gone" not in await acl_users(redis_server)
    assert (await redis_engine.drop_account(node, "gone")).note == "nothing to drop"


async def test_password_matches(redis_engine: RedisEngine, redis_server: RedisServer) -> None:
    await add_user(redis_server, "two", "on", ">First-pass-1", ">Second-pass-2", "~*", "+@all")
    await add_user(redis_server, "free", "on", "nopass", "~*", "+@all")
    node = redis_node(redis_server)
    assert await redis_engine.password_matches(node, "two", Secret("First-pass-1"))
    assert await redis_engine.password_matches(node, "two", Secret("Second-pass-2"))
    assert not await redis_engine.password_matches(node, "two", Secret("Third-pass-3"))
    # A password-free account has no password to match, although any AUTH succeeds.
    assert not await redis_engine.password_matches(node, "free", Secret("anything-1"))
    assert await redis_engine.password_matches(node, "default", Secret(redis_server.password or ""))
    with pytest.raises(AccountNotFound):
        await redis_engine.password_matches(node, "nobody", Secret("x"))


async def test_accounts_need_acl(
    redis_engine: RedisEngine, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulated Redis 5 (version reported as 5): no ACL users to create; requirepass checks."""

    pretend_redis_5(monkeypatch)
    node = replace(redis_node(redis_server))
    with pytest.raises(AccountsUnsupported):
        await redis_engine.create_account(node, "app", Secret("Pass-word-1"), read_only=False)
    assert await redis_engine.password_matches(node, "default", Secret(redis_server.password or ""))
    assert not await redis_engine.password_matches(node, "default", Secret("wrong-pass-1"))
    info = await redis_engine.probe(node, "app")
    assert (info.accounts, info.account_exists) == (False, False)
