"""Store latency: every SQL statement the store runs, timed by its kind.

``observe_statements`` hooks SQLAlchemy's cursor events on the store's engine (the same events
for SQLite run inline and for PostgreSQL through asyncio, since the asyncio engine drives a
synchronous one underneath; engines made with ``execution_options``, such as the store's
writer, share their parent's listeners). The label is the statement's first keyword from a
fixed set (``select``, ``insert``, ``update``, ``delete``, ``begin``, ``pragma``...; anything
else is ``other``), looked up in a dict: never the statement's text or parameters. A statement
that raises is not timed (the store's errors are counted where they surface). The hot
statements, which run on SQLite's or psycopg's driver without SQLAlchemy's events
(``keyturn.store.hot_path``), report to the same timer. Imports: ``keyturn.core``, the inline
engine and psycopg runner, SQLAlchemy and the standard library.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any, Final

from sqlalchemy import event

from keyturn.core.metrics import Metrics
from keyturn.store.inline import InlineEngine

#: First keyword (upper case) -> label.
_KINDS: Final = {
    word: word.lower()
    for word in (
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "WITH",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT",
        "RELEASE",
        "PRAGMA",
        "SET",
        "SHOW",
        "LOCK",
    )
}
_STARTED: Final = "_keyturn_started"


# Statement texts come from SQLAlchemy's compiled cache (the same string objects, hashes
# cached), so the usual cost is one dict lookup.
@lru_cache(maxsize=1024)
def statement_kind(statement: str) -> str:
    """The bounded label of ``statement``: its first keyword if known, else ``other``."""
    head = statement.lstrip()[:10].split(None, 1)
    return _KINDS.get(head[0].upper(), "other") if head else "other"


def observe_statements(engine: Any, metrics: Metrics) -> None:
    """Time every statement run through ``engine`` (an ``AsyncEngine``, the store's inline
    SQLite engine, or a plain ``Engine``) into ``metrics.store_statement``."""
    target = getattr(engine, "sync_engine", engine)
    # Hot statements skip SQLAlchemy's execution, and so its events (``hot_path``).
    if isinstance(engine, InlineEngine):
        engine.time_statements(metrics.store_statement)
    elif target.dialect.driver == "psycopg":
        from keyturn.store import pg_driver  # only on PostgreSQL (see hot_path)

        pg_driver.time_statements(target.dialect, metrics.store_statement)

    def before(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if context is not None:
            setattr(context, _STARTED, time.perf_counter())

    def after(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        started = getattr(context, _STARTED, None) if context is not None else None
        if started is not None:
            metrics.store_statement(statement_kind(statement), time.perf_counter() - started)

    event.listen(target, "before_cursor_execute", before)
    event.listen(target, "after_cursor_execute", after)
