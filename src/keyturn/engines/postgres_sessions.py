"""PostgreSQL sessions of a role on one node: who is logged in with it, and ending them.

``pg_stat_activity`` has one row per backend: the role it logged in as (``usename``: the
session user, so a twin role acting as its account is told apart), ``client_addr`` and
``client_port`` (NULL for a unix socket), ``application_name``, ``backend_start`` (the server's
clock: when the connection was opened), ``state`` and ``state_change`` (so an idle session's
idle time). keyturn's own admin connection (``pg_backend_pid()``) is left out; a standby's
walsender is not a client backend and is left out too. At most ``MAX_SESSIONS`` rows are read.
Ending one is ``pg_terminate_backend(pid)``, issued only for pids that are still backends of
that role, in one statement whose count is the answer. A non-superuser administrator sees other
roles' sessions only with ``pg_read_all_stats`` and ends them only with
``pg_signal_backend`` (privilege errors surface as ``AccountPermissionDenied``). Imports:
``keyturn.core``, ``keyturn.engines`` and psycopg.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from psycopg import sql

from keyturn.core.engine_ports import Session
from keyturn.core.model import Node

#: The most sessions one listing returns (``max_connections`` is usually far lower).
MAX_SESSIONS: Final = 10_000

_LIST: Final = sql.SQL(
    "SELECT pid, host(client_addr), client_port, application_name, backend_start,"
    " state, EXTRACT(EPOCH FROM (now() - state_change))"
    " FROM pg_catalog.pg_stat_activity"
    " WHERE usename = %s AND pid <> pg_catalog.pg_backend_pid()"
    " AND backend_type = 'client backend'"
    " ORDER BY backend_start, pid LIMIT %s"
)
_KILL: Final = sql.SQL(
    "SELECT count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(pid))"
    " FROM pg_catalog.pg_stat_activity"
    " WHERE usename = %s AND pid = ANY(%s) AND pid <> pg_catalog.pg_backend_pid()"
    " AND backend_type = 'client backend'"
)


def _address(host: Any, port: Any) -> str:
    if host is None:
        return ""
    text = str(host)
    text = f"[{text}]" if ":" in text else text
    return f"{text}:{int(port)}" if port is not None and int(port) >= 0 else text


async def listed(conn: Any, node: Node, account: str) -> list[Session]:
    async with conn.cursor() as cur:
        await cur.execute(_LIST, (account, MAX_SESSIONS))
        rows = await cur.fetchall()
    found: list[Session] = []
    for pid, host, port, name, started, state, idle in rows:
        state = "" if state is None else str(state)
        found.append(
            Session(
                node=node.endpoint,
                id=str(int(pid)),
                account=account,
                client_addr=_address(host, port),
                client_name="" if name is None else str(name),
                connected_at=started if isinstance(started, datetime) else None,
                idle_seconds=float(idle) if state.startswith("idle") and idle is not None else None,
                state=state,
            )
        )
    return found


async def ended(conn: Any, account: str, ids: Sequence[str]) -> int:
    pids = [int(r) for r in dict.fromkeys(ids) if r.isdigit() and len(r) <= 10 and int(r) < 2**31]
    if not pids:
        return 0
    async with conn.cursor() as cur:
        await cur.execute(_KILL, (account, pids))
        row = await cur.fetchone()
    return int(row[0]) if row else 0
