"""Ping a pooled PostgreSQL connection before use only when it has been idle a while.

SQLAlchemy's ``pool_pre_ping`` pings every connection at every check-out: a round trip before
each store call, which on the PostgreSQL store doubled a read's cost (a read is one statement,
and each round trip through the asyncio driver costs a few hundred microseconds of CPU here).
A connection the server dropped (a restart, a failover, an idle timeout) is nearly always one
that sat idle; one in constant use meets the loss on its next statement, which SQLAlchemy
reports as a disconnect, and then invalidates the whole pool so later calls get new
connections. So a connection is pinged at check-out only after ``IDLE_BEFORE_PING`` seconds
unused; a dead one found so is replaced, transparently, as ``pool_pre_ping`` does (the pool
retries the check-out with a fresh connection when a check-out handler raises
``DisconnectionError``). This is SQLAlchemy's documented "pessimistic disconnect handling"
recipe with a time limit, the one thing its ``pool_pre_ping`` flag cannot express.
Imports: SQLAlchemy and the standard library.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import event, exc

if TYPE_CHECKING:  # the asyncio extension loads only with a PostgreSQL store (its memory)
    from sqlalchemy.ext.asyncio import AsyncEngine

#: Seconds a pooled connection may sit unused before its next check-out pings it.
IDLE_BEFORE_PING: Final = 1.0
_LAST_USED: Final = "keyturn_last_used"


def ping_when_idle(engine: AsyncEngine, idle: float = IDLE_BEFORE_PING) -> None:
    """Install the check-out ping on ``engine``'s pool (its ``pool_pre_ping`` off)."""
    sync_engine = engine.sync_engine
    dialect = sync_engine.dialect

    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        last_used = record.info.get(_LAST_USED)
        if last_used is not None and time.monotonic() - last_used < idle:
            return
        try:
            alive = dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if not dialect.is_disconnect(error, dbapi_connection, None):
                raise
            alive = False
        if not alive:
            raise exc.DisconnectionError("the pooled connection was dropped")

    def on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_LAST_USED] = time.monotonic()

    event.listen(sync_engine.pool, "checkout", on_checkout)
    event.listen(sync_engine.pool, "checkin", on_checkin)
