"""Group commit for audit appends on the PostgreSQL store: the records of calls in flight in
one process are chained and inserted in one transaction, under one take of the chain's lock,
and each caller returns once that transaction is committed.

The audit log is one hash chain: every append reads the tail and writes ``seq + 1``, so
appends are serialized (on PostgreSQL by a transaction-scoped advisory lock), each holding
the lock for its round trips and its COMMIT's WAL flush. Every call writes a record (a read
call too), so the chain's lock bounded a PostgreSQL-backed node's calls per second at about
one over that time, whatever the cores. Here appends queue in the process: one writer task
takes the whole queue, writes it in one transaction, wakes its callers, and takes what queued
meanwhile. A lone caller waits no longer than before (one hop to the writer task); a failed
transaction fails every caller of its batch (none was told its record was kept). SQLite
needs none of this: its appends already share the group commit's batches
(``keyturn.store.group_commit``). Imports: ``keyturn.core`` and the standard library.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from keyturn.core.audit import AuditEvent
from keyturn.core.errors import StoreUnavailable

#: Records per transaction at most (a long queue is written in several).
MOST_PER_BATCH: Final = 256

WriteBatch = Callable[[Sequence[AuditEvent]], Awaitable[None]]


class AuditBatches:
    """Queue appends and write them in batches with ``write`` (one transaction each)."""

    def __init__(self, write: WriteBatch) -> None:
        self._write = write
        self._queue: list[tuple[AuditEvent, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def append(self, event: AuditEvent) -> None:
        """Return once ``event`` is committed with its batch; raise what failed it."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append((event, done))
        if self._writer is None:
            # A context of its own: the writer outlives the caller that started it, and must
            # not carry that caller's unit of work (``keyturn.store.pg_units``).
            self._writer = loop.create_task(self._drain(), context=contextvars.Context())
        # Shielded: a caller cancelled while it waits leaves its record in the batch, which
        # the others wait for.
        await asyncio.shield(done)

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._queue[:MOST_PER_BATCH]
                del self._queue[:MOST_PER_BATCH]
                try:
                    await self._write([event for event, _ in batch])
                except BaseException as exc:
                    for _, done in batch:
                        _fail(done, exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._writer = None
            # Anything still queued (the writer was cancelled: the store is closing) fails
            # rather than waits for ever.
            for _, done in self._queue:
                _fail(done, StoreUnavailable("the store was closed"))
            self._queue.clear()


def _fail(done: asyncio.Future[None], exc: BaseException) -> None:
    if not done.done():
        done.set_exception(exc)
        # Marked retrieved: a caller cancelled meanwhile never will, and the error is the
        # batch's, raised to every caller still waiting.
        done.exception()
