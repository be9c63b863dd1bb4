"""Redis Sentinel, as far as a password change is concerned.

Sentinels log in to the primary and its replicas to watch them, with the ``auth-pass`` they
hold for the master (as ``default``, like the replicas, unless configured otherwise). When
that password changes, every sentinel gets the new one (``SENTINEL SET <master> auth-pass``,
which the sentinel persists itself); then their connections to the data nodes are cut, and
each sentinel must report a successful PING to the master and every replica after the cut —
the proof that it logged in again. A sentinel's master name is the path of its URL.

Functions here take a connected client; ``RedisEngine`` decides when to call them. It imports
only ``keyturn.core``, ``keyturn.engines`` and redis-py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from keyturn.core.errors import EngineRejected
from keyturn.engines.redis_acl import pairs, text


async def _execute(client: Redis, *args: str) -> Any:
    execute: Callable[..., Awaitable[Any]] = client.execute_command
    return await execute(*args)


async def set_auth_pass(client: Redis, master: str, password: str) -> None:
    """Give the sentinel ``password`` for ``master`` and its replicas ("" for none)."""
    await _execute(client, "SENTINEL", "SET", master, "auth-pass", password)


async def drop_sentinel_links(client: Redis) -> int:
    """Cut the connections sentinels hold to the data node behind ``client``; how many."""
    reply = await _execute(client, "CLIENT", "LIST")
    killed = 0
    for line in text(reply).splitlines():
        fields = dict(f.split("=", 1) for f in line.split(" ") if "=" in f)
        if fields.get("name", "").startswith("sentinel-") and fields.get("id"):
            await _execute(client, "CLIENT", "KILL", "ID", fields["id"])
            killed += 1
    return killed


def _ping_ages(master_reply: Any, replicas_reply: Any) -> dict[str, int]:
    """Milliseconds since each watched instance last answered a PING with success."""
    ages: dict[str, int] = {}
    for entry in [master_reply, *(replicas_reply or [])]:
        fields = pairs(entry)
        name = f"{text(fields.get('ip', ''))}:{text(fields.get('port', ''))}"
        ages[name] = int(text(fields.get("last-ok-ping-reply", "0")) or 0)
    return ages


async def wait_logged_in(
    client: Redis, master: str, since: float, endpoint: str, timeout: float
) -> None:
    """Wait until the sentinel behind ``client`` had a successful PING from the master and
    every replica after ``since`` (a ``time.monotonic()`` value): it logged in again."""
    deadline = time.monotonic() + timeout
    while True:
        ages = _ping_ages(
            await _execute(client, "SENTINEL", "MASTER", master),
            await _execute(client, "SENTINEL", "REPLICAS", master),
        )
        elapsed_ms = (time.monotonic() - since) * 1000
        stale = sorted(name for name, age in ages.items() if age >= elapsed_ms)
        if not stale:
            return
        if time.monotonic() > deadline:
            raise EngineRejected(
                f"the sentinel {endpoint} did not log in again to {', '.join(stale)} "
                f"within {timeout:g} s"
            )
        await asyncio.sleep(0.1)
