"""Raw redis-py access to a throwaway redis-server, outside keyturn: the admin node keyturn is
given, fresh single-connection clients, and the ACL reads and writes a test sets up or checks
with (``ACL WHOAMI`` proves which user a password logs in as; ``WRONGPASS`` that it does not).
"""

from __future__ import annotations

import hashlib

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError

from keyturn.core.model import EngineKind, Node, parse_node_url
from tests.support.redis_server import RedisServer

#: Seconds a raw client waits for the server.
TIMEOUT = 2.0


def redis_node(server: RedisServer, user: str = "default", password: str | None = None) -> Node:
    """The node keyturn administers ``server`` through (``default`` and its password unless
    told otherwise)."""
    secret = server.password if password is None else password
    address = parse_node_url(server.url(user, secret), EngineKind.REDIS)
    return Node(instance_id="crs-test0001", ordinal=0, address=address)


def raw(server: RedisServer, user: str | None = None, password: str | None = None) -> Redis:
    """A fresh single-connection redis-py client (RESP2, no CLIENT SETINFO, no retries)."""
    return Redis(
        host="127.0.0.1",
        port=server.port,
        username=user,
        password=password,
        protocol=2,
        driver_info=None,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
        single_connection_client=True,
    )


def admin(server: RedisServer) -> Redis:
    return raw(server, "default", server.password)


async def whoami(server: RedisServer, user: str | None, password: str | None) -> str:
    async with raw(server, user, password) as client:
        reply = await client.execute_command("ACL", "WHOAMI")
    return reply.decode() if isinstance(reply, bytes) else str(reply)


async def assert_wrongpass(server: RedisServer, user: str, password: str) -> None:
    with pytest.raises(AuthenticationError) as caught:
        await whoami(server, user, password)
    assert caught.value.status_code == "WRONGPASS"


async def acl_users(server: RedisServer) -> set[str]:
    async with admin(server) as client:
        return {name.decode() for name in await client.execute_command("ACL", "USERS")}


async def add_user(server: RedisServer, name: str, *rules: str) -> None:
    async with admin(server) as client:
        await client.execute_command("ACL", "SETUSER", name, *rules)


def sha(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def pretend_redis_5(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make keyturn read version 5.0.14 from every server: a Redis 7 still implements
    ``requirepass``, so the pre-ACL code path runs against it."""

    async def old_version(client: object, endpoint: str) -> str:
        return "5.0.14"

    monkeypatch.setattr("keyturn.engines.redis_admins.server_version", old_version)
    monkeypatch.setattr("keyturn.engines.redis_reads.server_version", old_version)
