"""MySQL/MariaDB replication, as far as a password change is concerned.

``ALTER USER`` is written to the primary's binary log and applied by every replica, so keyturn
changes only the primary and never writes on a replica (a replica's own write would be an
errant transaction, and a read-only one refuses it). A node is a replica when it has a
replication source configured — a row in ``SHOW ALL SLAVES STATUS`` (MariaDB, every named
connection) or ``SHOW REPLICA STATUS`` (MySQL) — whether its threads run or not: ``@@read_only``
alone would call a primary in maintenance a replica and a writable replica a primary, and a
replica whose threads are stopped must not be patched behind replication's back (its
verification then times out and the change is rolled back). An admin without the right to read
replication state sees every node as a primary, which is how keyturn behaved before it knew
about replicas.

After each change on a primary its GTID position (MariaDB ``@@gtid_binlog_pos``, MySQL
``@@gtid_executed``) is kept in memory per instance; ``verify`` on a replica first waits for it
(``MASTER_GTID_WAIT`` / ``WAIT_FOR_EXECUTED_GTID_SET``, with the position passed as a driver-
escaped argument), in slices shorter than the engine timeout so no single query outlives its
bound. With no known position (keyturn restarted since the change, or no binary log) the fresh
login is retried instead. Only MariaDB 10.11 is tested. Imports: ``keyturn.core``,
``keyturn.engines`` and PyMySQL's errors; the connection is aiomysql's, passed in.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import pymysql  # type: ignore[import-untyped]

from keyturn.core.engine_ports import ApplyResult
from keyturn.core.errors import VerificationFailed
from keyturn.engines.mysql_accounts import permission_denied

log = logging.getLogger(__name__)

#: Seconds a replica may take to apply a change, on top of the engine's timeout.
REPLICA_GRACE: Final = 3.0
#: Pause between two login attempts when no position is known (each refusal is logged).
LOGIN_RETRY: Final = 0.25

#: What ``set_password`` and ``restore`` report for a replica: nothing was written there.
REPLICATED: Final = ApplyResult(persisted=True, note="replicated from the primary")

_MARIADB_SOURCES: Final = "SHOW ALL SLAVES STATUS"
_MYSQL_SOURCES: Final = "SHOW REPLICA STATUS"  # MySQL 8.0.22 and later
_MYSQL_OLD_SOURCES: Final = "SHOW SLAVE STATUS"
_MARIADB_POSITION: Final = "SELECT @@GLOBAL.gtid_binlog_pos"
_MYSQL_POSITION: Final = "SELECT @@GLOBAL.gtid_executed"
#: Both return 0 once the position is applied (MariaDB -1, MySQL 1 on timeout).
_MARIADB_WAIT: Final = "SELECT MASTER_GTID_WAIT(%s, %s)"
_MYSQL_WAIT: Final = "SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)"

_VERSION: Final = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def _version(text: str) -> tuple[int, int, int]:
    match = _VERSION.match(text)
    if match is None:
        return (0, 0, 0)
    return (int(match[1]), int(match[2]), int(match[3]))


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode(errors="replace")
    return "" if value is None else str(value)


async def _rows(conn: Any, query: str, params: tuple[Any, ...] | None = None) -> list[Any]:
    async with conn.cursor() as cur:
        await cur.execute(query, params)
        return list(await cur.fetchall())


async def is_replica(conn: Any, key: str, *, mariadb: bool, version: str) -> bool:
    """Whether the node ``key`` behind ``conn`` has a replication source configured."""
    if mariadb:
        query = _MARIADB_SOURCES
    else:
        query = _MYSQL_SOURCES if _version(version) >= (8, 0, 22) else _MYSQL_OLD_SOURCES
    try:
        return bool(await _rows(conn, query))
    except pymysql.err.MySQLError as exc:
        if not permission_denied(exc):
            raise
    log.warning("%s: the admin may not read replication state; taken for a primary", key)
    return False


async def binlog_position(conn: Any, *, mariadb: bool) -> str:
    """The primary's GTID position after its latest write ('' without a binary log)."""
    rows = await _rows(conn, _MARIADB_POSITION if mariadb else _MYSQL_POSITION)
    return _text(rows[0][0]).strip() if rows else ""


async def wait_for(conn: Any, position: str, seconds: float, *, mariadb: bool) -> bool:
    """Whether the replica applied ``position`` within ``seconds`` (waited on the server)."""
    query = _MARIADB_WAIT if mariadb else _MYSQL_WAIT
    rows = await _rows(conn, query, (position, round(max(seconds, 0.0), 3)))
    value = rows[0][0] if rows else None
    return value is not None and int(value) == 0


class GtidPositions:
    """The GTID position read after keyturn's latest change on each instance's primary, by
    instance id. Positions are cumulative (every domain's latest GTID), so the latest read
    covers every earlier change."""

    def __init__(self) -> None:
        self._positions: dict[str, str] = {}

    def record(self, instance_id: str, position: str) -> None:
        if position:
            self._positions[instance_id] = position

    def get(self, instance_id: str) -> str | None:
        return self._positions.get(instance_id)

    def __len__(self) -> int:
        return len(self._positions)


async def await_replica(
    endpoint: str,
    *,
    budget: float,
    slice_seconds: float,
    position: str | None,
    wait: Callable[[str, float], Awaitable[bool]],
    login: Callable[[], Awaitable[None]],
) -> None:
    """On the replica at ``endpoint``: wait until it applied ``position`` (``wait(position,
    seconds)`` blocks on the server for at most ``seconds``), then ``login()``, which raises
    ``VerificationFailed`` when the new password is refused. With no position the login is
    retried. ``VerificationFailed`` names the replica once ``budget`` seconds have passed."""
    deadline = time.monotonic() + budget
    if position is None:
        while True:
            try:
                await login()
                return
            except VerificationFailed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise VerificationFailed(
                        f"login to the replica {endpoint} with the new credential failed"
                        f" for {budget:g} s"
                    ) from None
                await asyncio.sleep(min(LOGIN_RETRY, remaining))
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise VerificationFailed(
                f"the replica {endpoint} did not apply the change within {budget:g} s"
            )
        if await wait(position, min(remaining, slice_seconds)):
            break
    await login()
