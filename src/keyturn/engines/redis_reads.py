"""What the Redis engine reads without changing anything: the health probe and the accounts.

A probe is a health check, so it always makes a round trip, even on a pooled client; on a
server with ACLs, asked about an account, it makes exactly one, since it is on every reset's
request path: ``INFO server``, what ``NodeState`` is read from (the account's ACL user and the
node's replication role) and, on Redis 7, ``ACL DRYRUN`` of the commands that would let the
account take over the server. Whoever probes may keep the state and the ``ROLE`` reply for
the task that follows (``probed_roles``). Older servers have only ``default`` and
``requirepass``. This module imports only ``keyturn.core``, ``keyturn.engines`` and redis-py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keyturn.core.engine_ports import AccountInfo, EngineInfo
from keyturn.engines import redis_plan
from keyturn.engines.redis_acl import TAKEOVER_COMMANDS, dryrun_allowed, parse_version, text
from keyturn.engines.redis_admins import (
    RedisAdmin,
    cmd,
    config_get,
    getuser,
    server_version,
    version_of,
)
from keyturn.engines.redis_login import DEFAULT_USER
from keyturn.engines.redis_replication import (
    NODE_STATE_REPLIES,
    ROLE_REPLY,
    NodeState,
    queue_node_state,
    state_of,
)


@dataclass(frozen=True, slots=True)
class Probed:
    """What a probe found; ``state`` and ``role`` (the ``ROLE`` reply, possibly an error)
    when it read them (an account asked about on a server with ACLs)."""

    info: EngineInfo
    state: NodeState | None = None
    role: Any = None


async def probe(admin: RedisAdmin, endpoint: str, account: str | None) -> Probed:
    """Probe the node behind ``admin`` (its version is updated), about ``account`` if any."""
    if account is None or not admin.acl:
        admin.version = await server_version(admin.client, endpoint)
        free = None if account is None else await password_free(admin, account)
        exists = None if account is None else free is not None
        info = EngineInfo(
            version=admin.version, accounts=admin.acl, password_free=free, account_exists=exists
        )
        return Probed(info)
    dryrun = parse_version(admin.version) >= (7,)
    pipe = admin.client.pipeline(transaction=False)
    pipe.execute_command("INFO", "server")
    queue_node_state(pipe, account)
    for command in TAKEOVER_COMMANDS if dryrun else ():
        pipe.execute_command("ACL", "DRYRUN", account, *command)
    info, *replies = await pipe.execute(raise_on_error=False)
    if isinstance(info, Exception):
        raise info
    state = state_of(replies[:NODE_STATE_REPLIES])
    dryruns = replies[NODE_STATE_REPLIES:]
    admin.version = version_of(info, endpoint)
    user = state.user
    found = EngineInfo(
        version=admin.version,
        accounts=True,
        password_free=None if user is None else user.nopass,
        account_exists=user is not None,
        superuser=None
        if user is None
        else user.all_commands or any(dryrun_allowed(d) for d in dryruns),
    )
    return Probed(found, state, replies[ROLE_REPLY])


def master_of(role_reply: Any) -> str | None:
    """The master a ``ROLE`` reply names ("" for a master), or None for a reply that cannot
    be read (refused, unexpected): then ``discover`` asks the node itself."""
    if isinstance(role_reply, Exception):
        return None
    try:
        return redis_plan.master_named(role_reply)
    except (IndexError, TypeError, ValueError):
        return None


async def password_free(admin: RedisAdmin, account: str) -> bool | None:
    """Whether ``account`` needs no password; None if the account does not exist."""
    if not admin.acl:
        if account != DEFAULT_USER:
            return None
        return await config_get(admin, "requirepass") == ""
    user = await getuser(admin, account)
    return None if user is None else user.nopass


async def accounts(admin: RedisAdmin) -> list[AccountInfo]:
    """Every account of the node (``default`` alone before Redis 6)."""
    if not admin.acl:
        free = await config_get(admin, "requirepass") == ""
        return [AccountInfo(name=DEFAULT_USER, enabled=True, password_free=free)]
    found: list[AccountInfo] = []
    for raw in await cmd(admin.client, "ACL", "USERS") or []:
        name = text(raw)
        user = await getuser(admin, name)
        if user is not None:
            found.append(
                AccountInfo(
                    name=name,
                    enabled=user.enabled,
                    password_free=user.nopass,
                    privilege=user.privilege(),
                )
            )
    return found
