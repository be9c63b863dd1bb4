"""A replicated Redis from outside keyturn: a primary and its replicas that log in to it as
``default`` (``replicated_redis`` in ``tests.support.fixtures`` starts one), and the checks
that replication still works after a change of that password (``password_violations``: what
the fault suites find wrong after a task; ``replicated``: a write reaches every replica).
``prepare_failover`` gives a primary the ``masterauth`` it needs once a Sentinel failover made
it a replica.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import redis

from tests.support.logins import can_login
from tests.support.redis_server import RedisServer, RedisServerError
from tests.support.waiting import holds_by

#: A node dropping a check's connection: one more try, not a failed check.
DROPPED = (redis.ConnectionError,)

#: How a check connects to a node as ``default`` with a password.
Connect = Callable[[RedisServer, str], redis.Redis]


def client(server: RedisServer, password: str) -> redis.Redis:
    return redis.Redis(port=server.port, password=password, protocol=2, driver_info=None)


def replicated(
    servers: list[RedisServer], password: str, key: str, connect: Connect = client
) -> bool:
    """Write on the primary (the first server), then read it on every replica (within 5 s).
    A node that drops the check's connection (a replica resyncing after a fault, a client
    killed as a session of the changed account) is asked again on a new one until then: what
    is checked is that the write arrives, not that one connection lasts."""
    deadline = time.monotonic() + 5

    def on(server: RedisServer, check: Callable[[redis.Redis], bool]) -> Callable[[], bool]:
        def attempt() -> bool:
            node = connect(server, password)
            try:
                return check(node)
            finally:
                node.close()

        return attempt

    if not holds_by(
        deadline, on(servers[0], lambda node: node.set(key, "v") is True), despite=DROPPED
    ):
        return False
    return all(
        holds_by(deadline, on(server, lambda node: node.get(key) == b"v"), despite=DROPPED)
        for server in servers[1:]
    )


def password_violations(
    nodes: list[RedisServer],
    replicas: list[RedisServer],
    expected: str,
    other: str,
    *,
    name: str = "node",
    connect: Connect = client,
) -> list[str]:
    """What is wrong with ``nodes`` once a task reported ``expected`` as ``default``'s password
    (``other`` being the one it replaced): a replica whose link to the primary stays down
    (10 s), a node that refuses ``expected``, still accepts ``other``, or holds more than that
    one password. Nodes are named ``{name} {index}`` in ``nodes``."""
    found: list[str] = []
    for replica in replicas:
        try:
            replica.wait_link_up(timeout=10)
        except (RedisServerError, redis.RedisError):
            found.append(f"{name} {nodes.index(replica)}: replication link down")
    digest = hashlib.sha256(expected.encode()).hexdigest()
    for i, node in enumerate(nodes):
        if not can_login(node.port, expected):
            found.append(f"{name} {i} refuses the password the task reports")
            continue
        if can_login(node.port, other):
            found.append(f"{name} {i} still accepts the other password")
        admin = connect(node, expected)
        try:
            user: Any = admin.acl_getuser("default")
        finally:
            admin.close()
        if list(user["passwords"]) != [digest]:
            found.append(f"{name} {i} holds {len(user['passwords'])} passwords, not exactly one")
    return found


def force_reconnect(servers: list[RedisServer], password: str) -> None:
    """Drop every replica's link: they must log in to the primary again with ``password``."""
    primary = client(servers[0], password)
    try:
        primary.execute_command("CLIENT", "KILL", "TYPE", "replica")
    finally:
        primary.close()
    for replica in servers[1:]:
        replica.password = password
        replica.wait_link_up()


def prepare_failover(primary: RedisServer) -> None:
    """``masterauth`` = the primary's own ``default`` password, persisted: after a failover it
    logs in to the promoted replica as its replicas log in to it now."""
    admin = client(primary, primary.password or "")
    try:
        admin.config_set("masterauth", primary.password or "")
        admin.execute_command("CONFIG", "REWRITE")
    finally:
        admin.close()
