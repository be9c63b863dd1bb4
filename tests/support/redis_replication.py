"""A replicated Redis from outside keyturn: a primary and its replicas that log in to it as
``default`` (``replicated_redis`` in ``tests.support.fixtures`` starts one), and the checks
that replication still works after a change of that password. ``prepare_failover`` gives a
primary the ``masterauth`` it needs once a Sentinel failover made it a replica.
"""

from __future__ import annotations

import time

import redis

from tests.support.redis_server import RedisServer


def client(server: RedisServer, password: str) -> redis.Redis:
    return redis.Redis(port=server.port, password=password, protocol=2, driver_info=None)


def replicated(servers: list[RedisServer], password: str, key: str) -> bool:
    """Write on the primary (the first server), then read it on every replica (within 5 s)."""
    primary = client(servers[0], password)
    try:
        primary.set(key, "v")
    finally:
        primary.close()
    deadline = time.monotonic() + 5
    for server in servers[1:]:
        replica = client(server, password)
        try:
            while replica.get(key) != b"v":
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.02)
        finally:
            replica.close()
    return True


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
