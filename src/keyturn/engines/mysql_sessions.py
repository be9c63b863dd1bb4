"""MySQL/MariaDB sessions of an account: who is logged in with it, and ending them.

``information_schema.PROCESSLIST`` gives each connection's id, user, client ``host:port``,
command and ``TIME``, the seconds in its current command: for an idle (``Sleep``) connection
that is its idle time, not its age. Neither MariaDB nor MySQL records when a connection was
opened, so ``Session.connected_at`` is None here; instead connection ids only grow within a
server's run, so ``mark`` reads the highest id now (``MAX(ID)`` of the processlist, keyturn's
own connection included) with the run's start (now minus ``Uptime``), and each listed session
carries that start (``Session.run_started``): a session of the same run whose id is at most a
mark taken once a rotation was applied predates it (``Session.opened_before_mark``); after a
restart ids begin again, and the sessions are possibly old. Both need the admin account to
hold ``PROCESS`` (else the processlist shows only its own connections): without it they are
refused (``EngineRejected``), never answered from a partial view. The client's name is its
``program_name`` connect attribute, read from ``performance_schema.session_connect_attrs``
when the performance schema is on (else ""). Rows are matched on the user only (a processlist
row does not name the account's host pattern), keyturn's own admin connection is left out,
and at most ``MAX_SESSIONS`` rows are read. ``KILL CONNECTION`` ends one by id, after the id
was checked to still be a connection of that user. Imports: ``keyturn.core``, ``keyturn.engines``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from keyturn.core.engine_ports import Session, SessionMark
from keyturn.core.errors import EngineRejected
from keyturn.core.model import Node
from keyturn.engines.mysql_accounts import split_account, text

#: The most sessions one listing returns (a server's ``max_connections`` is often lower).
MAX_SESSIONS: Final = 10_000

_LIST: Final = (
    "SELECT ID, HOST, COMMAND, TIME, STATE FROM information_schema.PROCESSLIST"
    " WHERE USER = %s AND ID <> CONNECTION_ID() ORDER BY ID LIMIT %s"
)
_PERF_ON: Final = "SELECT @@GLOBAL.performance_schema"
_NAMES: Final = (
    "SELECT PROCESSLIST_ID, ATTR_VALUE FROM performance_schema.session_connect_attrs"
    " WHERE ATTR_NAME = 'program_name'"
)
#: Whether the admin account holds PROCESS (granted to it directly): without it the
#: processlist shows only its own connections, and "nobody is using the old password" would
#: be a blind guess. GRANTEE reads 'user'@'host'; CURRENT_USER() user@host.
_SEES_ALL: Final = (
    "SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES WHERE PRIVILEGE_TYPE = 'PROCESS'"
    " AND GRANTEE = CONCAT(CHAR(39),"
    " REPLACE(CURRENT_USER(), '@', CONCAT(CHAR(39), '@', CHAR(39))), CHAR(39))"
)
#: ``mark``: the privilege check, the time now and the highest id, in one round trip.
_SEES_ALL_AND_HIGH: Final = (
    f"SELECT ({_SEES_ALL}), UNIX_TIMESTAMP(), (SELECT MAX(ID) FROM information_schema.PROCESSLIST)"
)
_UPTIME: Final = "SHOW GLOBAL STATUS LIKE 'Uptime'"
_OWNER: Final = "SELECT USER FROM information_schema.PROCESSLIST WHERE ID = %s"
_KILL: Final = "KILL CONNECTION %s"


async def _all(conn: Any, query: str, args: tuple[Any, ...] | None = None) -> list[Any]:
    async with conn.cursor() as cur:
        await cur.execute(query, args)
        return list(await cur.fetchall())


async def _names(conn: Any) -> dict[int, str]:
    rows = await _all(conn, _PERF_ON)
    if not rows or not rows[0][0]:
        return {}
    return {int(pid): text(value) for pid, value in await _all(conn, _NAMES)}


async def _started(conn: Any, now: int) -> int:
    """When the server's current run began (epoch seconds, to about a second)."""
    rows = await _all(conn, _UPTIME)
    return now - int(rows[0][1])


async def mark(conn: Any, node: Node, started: int | None = None) -> SessionMark:
    """The highest connection id now, with the run it belongs to: ``started`` when the caller
    read it before on ``conn`` (a connection never outlives its server's run), else read now."""
    [(sees_all, now, high)] = await _all(conn, _SEES_ALL_AND_HIGH)
    _refuse_unless(sees_all, node)
    if started is None:
        started = await _started(conn, int(now))
    return SessionMark(started=started, high=int(high or 0))


async def _check_sees_all(conn: Any, node: Node) -> None:
    rows = await _all(conn, _SEES_ALL)
    _refuse_unless(rows[0][0] if rows else 0, node)


def _refuse_unless(sees_all: Any, node: Node) -> None:
    if not int(sees_all or 0):
        raise EngineRejected(
            f"{node.endpoint}: the admin account lacks the PROCESS privilege, so other "
            "accounts' sessions cannot be seen"
        )


async def listed(conn: Any, node: Node, account: str) -> list[Session]:
    user, _ = split_account(account)
    await _check_sees_all(conn, node)
    rows = await _all(conn, _LIST, (user, MAX_SESSIONS))
    names = await _names(conn) if rows else {}
    run = await _started(conn, int((await _all(conn, "SELECT UNIX_TIMESTAMP()"))[0][0]))
    found: list[Session] = []
    for pid, host, command, seconds, state in rows:
        command = text(command)
        found.append(
            Session(
                node=node.endpoint,
                id=str(int(pid)),
                account=account,
                client_addr=text(host) if ":" in text(host) else "",
                client_name=names.get(int(pid), ""),
                connected_at=None,
                idle_seconds=float(seconds) if command == "Sleep" and seconds is not None else None,
                state=command.lower() if not text(state) else f"{command.lower()}: {text(state)}",
                run_started=run,
            )
        )
    return found


async def ended(conn: Any, account: str, ids: Sequence[str]) -> int:
    user, _ = split_account(account)
    count = 0
    for raw in dict.fromkeys(ids):
        if not raw.isdigit() or len(raw) > 20:
            continue
        owner = await _all(conn, _OWNER, (int(raw),))
        if not owner or text(owner[0][0]) != user:
            continue  # gone, or another account's: never ended by this call
        async with conn.cursor() as cur:
            try:
                await cur.execute(_KILL, (int(raw),))
            except Exception as exc:
                # 1094: unknown thread id (it ended between the check and the kill).
                if getattr(exc, "args", (None,))[0] == 1094:
                    continue
                raise
        count += 1
    return count
