"""Redis replication, as far as a password change is concerned.

ACL and CONFIG changes are not replicated: every node is changed on its own. When the account
being changed is the one replicas log in to the primary with (their ``masteruser``, or
``default``), a careless order breaks replication at the next reconnect. The order that never
does: the primary *adds* the new password and keeps the old ones (a staged change), each replica
switches ``masterauth`` to the new password, then the primary drops the old passwords, the
replication links are cut so they log in again, and every replica must report its link up.
A primary that has ``masterauth`` set (every node of a Redis Cluster; a primary prepared for a
Sentinel failover) switches it too: after a failover it is a replica of the new primary, which
only takes the new password.

This module reads a node's place in that picture in one pipelined round trip (``NodeState``)
and waits for a replica's link; ``RedisEngine`` applies the steps. It imports only
``keyturn.core``, ``keyturn.engines`` and redis-py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from keyturn.core.errors import EngineRejected
from keyturn.engines.redis_acl import AclUser, pairs, text

#: The user a replica logs in to its primary with when ``masteruser`` is not set.
DEFAULT_MASTER_USER = "default"


@dataclass(frozen=True, slots=True)
class NodeState:
    """An account and the node's replication role, read together."""

    user: AclUser | None
    #: This node replicates from a primary.
    replica: bool
    #: The user this node logs in to its primary with (meaningful when ``replica``).
    master_user: str
    #: Users that this node's connected replicas logged in with (when it is a primary).
    replica_users: frozenset[str]
    #: ``masterauth`` is set: a primary configured so, e.g. every node of a Redis Cluster,
    #: logs in to its new primary with it once a failover made it a replica.
    has_masterauth: bool = False

    def staged_for(self, account: str) -> bool:
        """Whether a new password for ``account`` must first be added beside the old ones,
        because replicas are logged in to this node as ``account``."""
        return account in self.replica_users

    def authenticates_as(self, account: str) -> bool:
        """Whether this node logs in to a primary as ``account`` with its ``masterauth``: a
        replica does now; a primary with ``masterauth`` set will once a failover (inside a
        Redis Cluster, or by Sentinel) made it a replica, so it must follow the change too."""
        return (self.replica or self.has_masterauth) and self.master_user == account


def replica_users(reply: Any) -> frozenset[str]:
    """The ``user=`` fields of a ``CLIENT LIST TYPE replica`` reply."""
    found = set()
    for line in text(reply).splitlines():
        for field in line.split(" "):
            if field.startswith("user="):
                found.add(field[len("user=") :])
    return frozenset(found)


def is_replica(role_reply: Any) -> bool:
    """Whether a ``ROLE`` reply is a replica's (``slave``)."""
    if isinstance(role_reply, (list, tuple)) and role_reply:
        return text(role_reply[0]) == "slave"
    return False


#: How many replies ``queue_node_state`` adds to a pipeline, and where ``ROLE``'s is.
NODE_STATE_REPLIES = 5
ROLE_REPLY = 1


def queue_node_state(pipe: Pipeline, account: str) -> None:
    """Queue what ``NodeState`` is read from: ``ACL GETUSER``, ``ROLE``, ``CONFIG GET
    masteruser`` and ``masterauth`` and ``CLIENT LIST TYPE replica`` (``NODE_STATE_REPLIES``
    replies, for ``state_of``)."""
    pipe.execute_command("ACL", "GETUSER", account)
    pipe.execute_command("ROLE")
    pipe.execute_command("CONFIG", "GET", "masteruser")
    pipe.execute_command("CONFIG", "GET", "masterauth")
    pipe.execute_command("CLIENT", "LIST", "TYPE", "replica")


def state_of(replies: Sequence[Any]) -> NodeState:
    """The ``NodeState`` in the replies to ``queue_node_state``'s commands (a pipeline run
    with ``raise_on_error=False``). An admin without the right to read replication state is
    treated as a standalone node, which is the behaviour of keyturn before it knew about
    replication; a refused ``ACL GETUSER`` is raised."""
    user_reply, role, masteruser, masterauth, clients = replies
    if isinstance(user_reply, Exception):
        raise user_reply
    user = None if user_reply is None else AclUser.parse(user_reply)
    master_user = ""
    if not isinstance(masteruser, Exception):
        master_user = text(pairs(masteruser).get("masteruser", ""))
    return NodeState(
        user=user,
        replica=not isinstance(role, Exception) and is_replica(role),
        master_user=master_user or DEFAULT_MASTER_USER,
        replica_users=frozenset() if isinstance(clients, Exception) else replica_users(clients),
        has_masterauth=not isinstance(masterauth, Exception)
        and bool(pairs(masterauth).get("masterauth")),
    )


async def node_state(client: Redis, account: str) -> NodeState:
    """The node's ``NodeState`` for ``account``, in one round trip."""
    pipe = client.pipeline(transaction=False)
    queue_node_state(pipe, account)
    return state_of(await pipe.execute(raise_on_error=False))


async def wait_link_up(
    client: Redis, endpoint: str, timeout: float, master: tuple[str, int] | None = None
) -> bool:
    """Wait until the replica behind ``client`` reports ``master_link_status:up``; a replica
    retries its primary once a second, so a re-authentication takes up to about a second.

    With ``master`` (host, port), a node that does not replicate from it is not waited for
    and False is returned: an old primary that came back after a Sentinel failover is still a
    primary of its own until the sentinel makes it a replica, and then logs in with the
    ``masterauth`` its own step gave it."""
    deadline = time.monotonic() + timeout
    while True:
        info = _info_pairs(await _info(client))
        if master is not None and not _follows(info, master):
            return False
        if text(info.get("master_link_status", "")) == "up":
            return True
        if time.monotonic() > deadline:
            raise EngineRejected(
                f"the replica {endpoint} did not log in to its primary again within {timeout:g} s"
            )
        await asyncio.sleep(0.05)


def _follows(info: dict[str, Any], master: tuple[str, int]) -> bool:
    """Whether the node replicates from ``master``. Only the port is compared: a replica may
    name its primary by another spelling (a host name, an IP) than the inventory, and a false
    match only costs the wait that was the rule before."""
    return text(info.get("role", "")) == "slave" and text(info.get("master_port", "")) == str(
        master[1]
    )


async def _info(client: Redis) -> Any:
    execute: Callable[..., Awaitable[Any]] = client.execute_command
    return await execute("INFO", "replication")


def _info_pairs(reply: Any) -> dict[str, Any]:
    """An ``INFO`` reply (parsed dict, or raw text) as a dict."""
    if isinstance(reply, dict):
        return reply
    found: dict[str, Any] = {}
    for line in text(reply).splitlines():
        if ":" in line and not line.startswith("#"):
            key, value = line.split(":", 1)
            found[key] = value.strip()
    return found
