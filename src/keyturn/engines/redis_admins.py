"""Pooled Redis admin clients: one per node, logged in as the node's admin, rebuilt when the
admin credential changes under it (keyturn reset its own account), every operation bounded by
the engine timeout and its errors translated into domain errors.

Also the few admin commands every operation shares: a command with its arguments as separate
RESP bulk strings (never text built from strings), ``CONFIG GET``, ``ACL GETUSER`` and the save
after a change (``ACL SAVE`` with an aclfile, else ``CONFIG REWRITE``; a failed save is
reported in the ``ApplyResult``, not raised). Clients speak RESP2, skip ``CLIENT SETINFO`` and
never retry by themselves. It imports only ``keyturn.core``, ``keyturn.engines`` and redis-py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ResponseError

from keyturn.core.errors import EngineRejected, EngineUnavailable
from keyturn.core.model import Node, NodeAddress
from keyturn.core.ports import ApplyResult
from keyturn.core.secrets import Secret
from keyturn.engines.base import close_quietly, engine_call
from keyturn.engines.redis_acl import (
    AclUser,
    classify,
    pairs,
    parse_version,
    persist_failure,
    text,
)
from keyturn.engines.redis_login import auth_args, tls_options

log = logging.getLogger(__name__)

T = TypeVar("T")


async def cmd(client: Redis, *args: str) -> Any:
    """One command, its arguments sent as separate RESP bulk strings."""
    execute: Callable[..., Awaitable[Any]] = client.execute_command
    return await execute(*args)


async def server_version(client: Redis, endpoint: str) -> str:
    """``redis_version`` from ``INFO server``: the first command of every admin login."""
    return version_of(await cmd(client, "INFO", "server"), endpoint)


def version_of(reply: Any, endpoint: str) -> str:
    info = pairs(reply)
    version = text(info.get("redis_version", ""))
    if not parse_version(version):
        raise EngineRejected(f"{endpoint} did not report a Redis version")
    return version


@dataclass(slots=True)
class RedisAdmin:
    """A pooled admin client and what keyturn learnt when it logged in."""

    client: Redis
    username: str
    password: Secret | None
    version: str
    #: ``CONFIG GET aclfile``, read once: the setting cannot change while the server runs.
    aclfile: str | None = None

    @property
    def acl(self) -> bool:
        return parse_version(self.version) >= (6,)


async def config_get(admin: RedisAdmin, name: str) -> str:
    return text(pairs(await cmd(admin.client, "CONFIG", "GET", name)).get(name, ""))


async def getuser(admin: RedisAdmin, account: str) -> AclUser | None:
    reply = await cmd(admin.client, "ACL", "GETUSER", account)
    return None if reply is None else AclUser.parse(reply)


async def persist(node: Node, admin: RedisAdmin, *, config: bool = False) -> ApplyResult:
    """Save the change: ``ACL SAVE`` with an aclfile, else ``CONFIG REWRITE``; both when
    ``config`` says a setting (``masterauth``) changed too."""
    command: tuple[str, ...] = ("CONFIG", "GET", "aclfile")
    try:
        if admin.acl and admin.aclfile is None:
            admin.aclfile = await config_get(admin, "aclfile")
        if admin.acl and admin.aclfile:
            command = ("ACL", "SAVE")
            await cmd(admin.client, *command)
        if config or not (admin.acl and admin.aclfile):
            command = ("CONFIG", "REWRITE")
            await cmd(admin.client, *command)
    except ResponseError as exc:
        reason = persist_failure(" ".join(command), exc)
        log.warning("credential change on %s not persisted: %s", node.key, reason)
        return ApplyResult(persisted=False, note=f"not persisted: {reason}")
    return ApplyResult(persisted=True)


def _candidates(node: Node) -> list[Secret | None]:
    """Admin passwords to try in order: the registered one, then the pending one."""
    found: list[Secret | None] = [node.address.password]
    if node.pending_password is not None and node.pending_password != node.address.password:
        found.append(node.pending_password)
    return found


async def close_client(client: Redis) -> None:
    await close_quietly(client.aclose(), "a redis client")


def _slot(node: Node) -> str:
    """Where a node's admin client is pooled: its instance and address, not its ordinal. A
    discovered node (a cluster's, a sentinel's replica) gets an ordinal by its place in that
    discovery, which a failover or a node added later shifts to another server; an address
    always names the same one."""
    return f"{node.instance_id}/{node.address.endpoint}"


class RedisAdmins:
    """Admin clients per node; ``timeout`` bounds each operation (connect included)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._pool: dict[str, RedisAdmin] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def pooled(self, node: Node) -> RedisAdmin | None:
        return self._pool.get(_slot(node))

    async def run(
        self,
        node: Node,
        action: str,
        op: Callable[[RedisAdmin], Awaitable[T]],
        *,
        budget: float | None = None,
    ) -> T:
        """Run ``op`` on the node's admin client, bounded (by the engine timeout plus
        ``budget`` seconds for operations that wait) and with errors translated."""
        endpoint = node.address.endpoint
        timeout = self.timeout + (budget or 0.0)
        try:
            async with engine_call(endpoint, action, timeout=timeout, classify=classify):
                admin = await self._admin(node)
                try:
                    return await op(admin)
                except AuthenticationError:
                    # A new pooled connection could not log in: the admin credential changed
                    # under the pool (keyturn reset its own account). Rebuild once.
                    if node.pending_password is None:
                        raise
                    await self._drop(_slot(node))
                    return await op(await self._admin(node))
        except EngineUnavailable:
            await self._drop(_slot(node))
            raise

    async def forget(self, node: Node) -> None:
        await self._drop(_slot(node))

    async def close(self) -> None:
        for key in list(self._pool):
            await self._drop(key)
        self._locks.clear()

    async def _admin(self, node: Node) -> RedisAdmin:
        """The pooled admin client for ``node``, built (and its version read) on first use."""
        lock = self._locks.setdefault(_slot(node), asyncio.Lock())
        async with lock:
            current = self._pool.get(_slot(node))
            candidates = _candidates(node)
            if current is not None:
                if current.username == node.address.username and current.password in candidates:
                    return current
                await self._drop(_slot(node))
            for i, password in enumerate(candidates):
                client = self.client(node.address, auth_args(node.address.username, password))
                try:
                    version = await server_version(client, node.address.endpoint)
                except AuthenticationError:
                    await close_client(client)
                    if i + 1 < len(candidates):
                        log.info("admin login to %s: trying the pending credential", node.key)
                        continue
                    raise
                except BaseException:
                    await close_client(client)
                    raise
                admin = RedisAdmin(client, node.address.username, password, version)
                self._pool[_slot(node)] = admin
                log.debug("admin client for %s ready (Redis %s)", node.key, version)
                return admin
            raise AssertionError("unreachable: there is always one candidate")

    def client(self, address: NodeAddress, login: tuple[str | None, str | None]) -> Redis:
        """A client that logs in with ``login`` (see ``auth_args``) on each new connection."""
        return Redis(
            host=address.host,
            port=address.port,
            username=login[0],
            password=login[1],
            protocol=2,
            driver_info=None,  # no CLIENT SETINFO; same as lib_name=None, lib_version=None
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),
            ssl=address.tls,
            **tls_options(address),
        )

    async def _drop(self, key: str) -> None:
        admin = self._pool.pop(key, None)
        if admin is not None:
            await close_client(admin.client)
