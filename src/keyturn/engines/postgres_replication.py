"""PostgreSQL streaming replication, as far as a password change is concerned.

A role's verifier lives in ``pg_authid``, a shared catalog that a hot standby replays from the
primary's WAL; a standby is read-only and never takes an ``ALTER ROLE`` itself. So keyturn
changes only the primary (a node for which ``pg_is_in_recovery()`` is false) and, on a standby,
first waits until it has replayed the change, then proves the new password with a fresh login.

After each change on a primary the WAL position is read and kept in memory, per instance
(``ReplayPositions``). It is ``pg_current_wal_insert_lsn()`` rather than
``pg_current_wal_lsn()``: with ``synchronous_commit = off`` the commit record of the change may
be inserted but not yet written when the statement returns, and only the insert position is
sure to be past it; the WAL writer flushes it within a few hundred milliseconds, so a standby
reaches it. A standby has replayed the change once ``pg_last_wal_replay_lsn()`` is at or past
that position. After a restart of keyturn no position is known, and the fresh login is retried
instead, for the same bounded time. This module holds the queries, the positions and the
bounded polling loop; ``keyturn.engines.postgres`` runs them. It imports only ``keyturn.core``
and psycopg.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Final

from psycopg import sql

from keyturn.core.engine_ports import ApplyResult
from keyturn.core.errors import VerificationFailed

#: Seconds a standby may take to replay a change, on top of the engine's timeout.
REPLAY_GRACE: Final = 3.0
#: Pause between two looks at a standby's replay position.
REPLAY_POLL: Final = 0.02
#: Pause between two login attempts when no position is known; each refused attempt is a line
#: in the server log, so this is slower than the position poll.
LOGIN_RETRY: Final = 0.25

#: What ``set_password`` and ``restore`` report for a standby: nothing was written there.
REPLICATED: Final = ApplyResult(persisted=True, note="replicated from the primary")

IN_RECOVERY: Final = sql.SQL("SELECT pg_catalog.pg_is_in_recovery()")
#: See the module docstring for why the insert position and not the write position.
PRIMARY_POSITION: Final = sql.SQL("SELECT pg_catalog.pg_current_wal_insert_lsn()::text")
#: True once the standby replayed up to the given position; NULL (falsy) when it is no
#: standby any more, which the caller notices on its next recovery check.
REPLAYED: Final = sql.SQL("SELECT pg_catalog.pg_last_wal_replay_lsn() >= %s::pg_lsn")

_LSN: Final = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")


def parse_lsn(text: str) -> int | None:
    """``"16/B374D848"`` -> its 64-bit position; None for anything else."""
    match = _LSN.fullmatch(text.strip())
    if match is None:
        return None
    return (int(match[1], 16) << 32) | int(match[2], 16)


def format_lsn(position: int) -> str:
    """The ``pg_lsn`` text of a 64-bit WAL position."""
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


class ReplayPositions:
    """The WAL position of the latest change keyturn made on each instance's primary, by
    instance id. Only ever moves forward, so concurrent changes keep the furthest one."""

    def __init__(self) -> None:
        self._positions: dict[str, int] = {}

    def record(self, instance_id: str, lsn: str) -> None:
        position = parse_lsn(lsn)
        if position is not None and position > self._positions.get(instance_id, -1):
            self._positions[instance_id] = position

    def get(self, instance_id: str) -> str | None:
        position = self._positions.get(instance_id)
        return None if position is None else format_lsn(position)

    def __len__(self) -> int:
        return len(self._positions)


async def until(check: Callable[[], Awaitable[bool]], *, budget: float, interval: float) -> bool:
    """Call ``check`` until it returns True (-> True) or ``budget`` seconds have passed (->
    False). ``check`` itself is bounded by the engine timeout, so the loop ends at most one
    such bound after ``budget``; it is not cancelled mid-query, which would leave the pooled
    connection in an unknown state."""
    deadline = time.monotonic() + budget
    while True:
        if await check():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(interval, remaining))


async def await_replay(
    endpoint: str,
    *,
    budget: float,
    lsn: str | None,
    replayed: Callable[[str], Awaitable[bool]],
    login: Callable[[], Awaitable[None]],
) -> None:
    """On the standby at ``endpoint``: wait until ``replayed(lsn)`` holds, then ``login()``
    (which raises ``VerificationFailed`` when the new password is refused). With no known
    ``lsn`` the login itself is retried. Either way ``VerificationFailed`` names the standby
    once ``budget`` seconds have passed."""
    if lsn is None:

        async def logs_in() -> bool:
            try:
                await login()
            except VerificationFailed:
                return False
            return True

        if not await until(logs_in, budget=budget, interval=LOGIN_RETRY):
            raise VerificationFailed(
                f"login to the standby {endpoint} with the new credential failed for {budget:g} s"
            )
        return
    position = lsn
    if not await until(lambda: replayed(position), budget=budget, interval=REPLAY_POLL):
        raise VerificationFailed(
            f"the standby {endpoint} did not replay the change within {budget:g} s"
        )
    await login()
