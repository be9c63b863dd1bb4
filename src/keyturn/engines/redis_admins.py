"""Pooled Redis admin clients: one per node, logged in as the node's admin, rebuilt when the
admin credential changes under it (keyturn reset its own account), every operation bounded by
the engine timeout and its errors translated into domain errors. The pooling, locking and
lockout guard are ``keyturn.engines.admin_pool``'s, shared with the SQL adapters; this module
says how a Redis admin logs in.

Also the few admin commands every operation shares: a command with its arguments as separate
RESP bulk strings (never text built from strings), ``CONFIG GET``, ``ACL GETUSER`` and the save
after a change (``ACL SAVE`` with an aclfile, else ``CONFIG REWRITE``; a failed save is
reported in the ``ApplyResult``, not raised). Clients speak RESP2, skip ``CLIENT SETINFO`` and
never retry by themselves. It imports only ``keyturn.core``, ``keyturn.engines`` and redis-py.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ResponseError

from keyturn.core.engine_ports import ApplyResult
from keyturn.core.errors import EngineRejected
from keyturn.core.model import Node, NodeAddress
from keyturn.core.secrets import Secret
from keyturn.engines.admin_pool import AdminPool
from keyturn.engines.base import close_quietly
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

    def alive(self) -> bool:
        # The client reconnects by itself: a dead connection is replaced, not the client.
        return True

    async def aclose(self) -> None:
        await close_client(self.client)


async def config_get(admin: RedisAdmin, name: str) -> str:
    return text(pairs(await cmd(admin.client, "CONFIG", "GET", name)).get(name, ""))


async def getuser(admin: RedisAdmin, account: str) -> AclUser | None:
    reply = await cmd(admin.client, "ACL", "GETUSER", account)
    return None if reply is None else AclUser.parse(reply)


async def apply_and_persist(
    node: Node, admin: RedisAdmin, change: tuple[str, ...], *, config: bool = False
) -> ApplyResult:
    """Run ``change`` and save it (as ``persist``) in one round trip: the saves are pipelined
    behind it. A refused ``change`` raises as ``cmd`` would (its save then wrote the unchanged
    state, which is harmless); a refused save is reported as ``persist`` does. Until the
    client knows its node's aclfile (its first save reads it) the two go one after the other.
    Only the change and the saves are sent together: a step that must not run after a refused
    change (``CONFIG SET masterauth`` after ``ACL SETUSER``) goes in ``change`` of a later
    call, never before."""
    if admin.acl and admin.aclfile is None:
        await cmd(admin.client, *change)
        return await persist(node, admin, config=config)
    saves = _saves(admin, config)
    pipe = admin.client.pipeline(transaction=False)
    pipe.execute_command(*change)
    for command in saves:
        pipe.execute_command(*command)
    # raise_on_error=False: redis-py would otherwise put the command (a password) into the
    # error's text.
    changed, *saved = await pipe.execute(raise_on_error=False)
    if isinstance(changed, Exception):
        raise changed
    for command, reply in zip(saves, saved, strict=True):
        if isinstance(reply, ResponseError):
            return _not_persisted(node, " ".join(command), reply)
        if isinstance(reply, Exception):
            raise reply
    return ApplyResult(persisted=True)


def _saves(admin: RedisAdmin, config: bool) -> list[tuple[str, ...]]:
    """The commands that save a change once the aclfile is known."""
    saves: list[tuple[str, ...]] = []
    if admin.acl and admin.aclfile:
        saves.append(("ACL", "SAVE"))
    if config or not (admin.acl and admin.aclfile):
        saves.append(("CONFIG", "REWRITE"))
    return saves


def _not_persisted(node: Node, command: str, exc: ResponseError) -> ApplyResult:
    reason = persist_failure(command, exc)
    log.warning("credential change on %s not persisted: %s", node.key, reason)
    return ApplyResult(persisted=False, note=f"not persisted: {reason}")


async def persist(node: Node, admin: RedisAdmin, *, config: bool = False) -> ApplyResult:
    """Save the change: ``ACL SAVE`` with an aclfile, else ``CONFIG REWRITE``; both when
    ``config`` says a setting (``masterauth``) changed too."""
    command: tuple[str, ...] = ("CONFIG", "GET", "aclfile")
    try:
        if admin.acl and admin.aclfile is None:
            admin.aclfile = await config_get(admin, "aclfile")
        for command in _saves(admin, config):
            await cmd(admin.client, *command)
    except ResponseError as exc:
        return _not_persisted(node, " ".join(command), exc)
    return ApplyResult(persisted=True)


async def close_client(client: Redis) -> None:
    await close_quietly(client.aclose(), "a redis client")


class RedisAdmins(AdminPool[RedisAdmin]):
    """Admin clients per node; ``timeout`` bounds each operation (connect included). A client
    keeps a pool of connections of its own, so operations on one node run concurrently."""

    def __init__(self, timeout: float) -> None:
        super().__init__(
            timeout=timeout,
            classify=classify,
            open=self._open,
            refused=lambda exc: isinstance(exc, AuthenticationError),
            concurrent=True,
        )

    async def _open(self, node: Node, password: Secret | None) -> RedisAdmin:
        """Log in as the node's admin and read its version (the first command)."""
        client = self.client(node.address, auth_args(node.address.username, password))
        try:
            version = await server_version(client, node.address.endpoint)
        except BaseException:
            await close_client(client)
            raise
        log.debug("admin client for %s ready (Redis %s)", node.key, version)
        return RedisAdmin(client, node.address.username, password, version)

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
