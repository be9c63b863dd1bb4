"""``SqlAuditLog``: the tamper-evident ``AuditLog`` port on the store's ``audit_log`` table.

Records are chained and keyed as ``keyturn.store.audit_chain`` describes: each stores the
previous record's hash and ``hash = HMAC-SHA256(K, prev_hash + event)``, ``K`` derived from the
master key, so rewriting the chain from an edited record on needs the master key. An append
reads the tail and inserts ``seq + 1`` in one write transaction (on PostgreSQL the appends in
flight of a process share one: ``keyturn.store.audit_batches``), durable when it returns and
raising on any failure, so the gate can refuse a change whose record cannot be written.
``verify`` walks the chain from record 1 and names the first record that was edited, removed,
moved, re-hashed without the key or downgraded to the unkeyed scheme. It detects changes inside
the chain, not a cut of its newest records: keep ``head_hash`` somewhere else to catch that.
``rekey_chain`` rewrites a chain's good records under another key (records from before the chain
was keyed, at start-up; every record, when the master key is rotated) after walking it, and
never rewrites a record that did not verify, so re-keying cannot launder an edit. The table
lives in the store's database and appends share the store's writer; events hold no secret, so
nothing here is sealed. Imports: ``keyturn.core``, SQLAlchemy, this package and the standard
library.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa

from keyturn.core.audit import AuditEvent, AuditOutcome
from keyturn.core.errors import InternalError
from keyturn.store import hot_path
from keyturn.store.audit_batches import AuditBatches
from keyturn.store.audit_chain import (
    GENESIS,
    KEYED,
    LEGACY,
    ChainCheck,
    ChainKeys,
    ChainWalk,
    canonical_json,
    clip,
    event_from_json,
    keyed_hash,
)
from keyturn.store.base import Connection, SqlDatabase, guarded
from keyturn.store.schema import audit_log
from keyturn.store.sealing import AesGcmSecretBox
from keyturn.store.sql import SqlStore

#: Rows read per query by a walk (memory stays flat however long the chain is).
_WALK_BATCH: Final = 2000
#: Rows rewritten per UPDATE round trip (executemany) by a re-keying.
_REKEY_BATCH: Final = 500
#: Key of the PostgreSQL advisory lock that serializes appends (arbitrary, fixed).
_PG_APPEND_LOCK: Final = 0x6B74_6175_6469_74

#: Statements built once: a statement built per call costs more than its commit.
_INSERT: Final = sa.insert(audit_log)
_LAST: Final = (
    sa.select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
)
_FIRST_ROW: Final = sa.select(audit_log).order_by(audit_log.c.seq).limit(1)
_LAST_ROW: Final = sa.select(audit_log).order_by(audit_log.c.seq.desc()).limit(1)
_RELINK: Final = (
    sa.update(audit_log)
    .where(audit_log.c.seq == sa.bindparam("b_seq"))
    .values(
        prev_hash=sa.bindparam("b_prev"), hash=sa.bindparam("b_hash"), scheme=sa.bindparam("b_s")
    )
)


def _clipped(event: AuditEvent) -> AuditEvent:
    changes: dict[str, Any] = {
        f.name: clip(getattr(event, f.name))
        for f in dataclasses.fields(event)
        if isinstance(getattr(event, f.name), str) and f.name != "outcome"
    }
    return dataclasses.replace(event, **changes)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One stored record."""

    seq: int
    event: AuditEvent
    prev_hash: str
    hash: str
    scheme: str = KEYED


@dataclass(frozen=True, slots=True)
class ChainRekey:
    """What a re-keying did: ``check`` is the chain as walked before (its ``head_hash`` the
    old head), ``rekeyed`` how many records were rewritten, ``head_hash`` the good part's
    head afterwards."""

    check: ChainCheck
    rekeyed: int
    head_hash: str


@dataclass(frozen=True, slots=True)
class ChainState:
    """What the two ends of the chain say, read in O(1) at every start: ``unkeyed_start``:
    it opens with an unkeyed record (written before the chain was keyed); ``unkeyed_tail``:
    its newest record is unkeyed although its first is keyed (a downgrade); ``foreign_tail``:
    its newest record verifies under another master key than the sealing one (a rotation was
    interrupted). All False for an empty chain."""

    unkeyed_start: bool = False
    unkeyed_tail: bool = False
    foreign_tail: bool = False

    @property
    def needs_rekey(self) -> bool:
        return self.unkeyed_start or self.foreign_tail


class _NoSecrets:
    """The audit log seals nothing: an ``AuditEvent`` has no field that could hold a secret."""

    def seal(self, plaintext: str, *, context: str) -> str:
        raise InternalError("the audit log stores no secrets")

    def unseal(self, token: str, *, context: str) -> str:
        raise InternalError("the audit log stores no secrets")


def store_chain_keys(db: SqlDatabase, *, legacy: bool = True) -> ChainKeys:
    """The chain keys of the master key ``db`` seals with."""
    box = db.box
    if not isinstance(box, AesGcmSecretBox):
        raise InternalError("the audit chain is keyed by the master key: the store has none")
    return ChainKeys.of(box, legacy=legacy)


class SqlAuditLog:
    """The append-only, keyed, hash-chained audit log in ``store``'s database. ``keys``
    default to those of the master key ``store`` seals with (unkeyed records allowed at the
    chain's start; see ``keyturn.store.audit_keying`` for the data dir's own rule)."""

    def __init__(self, store: SqlStore, keys: ChainKeys | None = None) -> None:
        self._keys = keys if keys is not None else store_chain_keys(store.db)
        # One writer per process and database: appends queue on the store's own writer and
        # lock (see ``SqlDatabase``), sealing nothing.
        self._db = store.db.sealing_with(_NoSecrets())
        self._batches = None if self._db.sqlite else AuditBatches(self._write_batch)

    @property
    def keys(self) -> ChainKeys:
        return self._keys

    @guarded
    async def append(self, event: AuditEvent) -> None:
        # Several writers, one chain. SQLite: ``_write`` opens BEGIN IMMEDIATE, which takes the
        # database's write lock before the tail is read, so two keyturn processes on one file
        # (or the server and a CLI) allocate seq numbers one after the other; the loser waits
        # in the busy handler. Inside one process the inline engine never suspends within a
        # transaction, so this log's writer and the store's never interleave. PostgreSQL's
        # READ COMMITTED would let two appends read the same tail (one would then fail on the
        # primary key): a transaction-scoped advisory lock serializes them instead, and the
        # appends of this process outside any unit of work share one take of it
        # (``keyturn.store.audit_batches``).
        if self._batches is not None and not self._db.in_unit():
            await self._batches.append(event)
            return
        # Deferrable: inside the gate's unit of work the record is durable when the unit
        # ends, with the nonce (before the change) or the task row (before the answer).
        async with self._db.write(deferrable=True) as conn:
            await self._insert(conn, [event])

    async def _write_batch(self, events: Sequence[AuditEvent]) -> None:
        async with self._db.write() as conn:
            await self._insert(conn, events)

    async def _insert(self, conn: Connection, events: Sequence[AuditEvent]) -> None:
        """Chain ``events`` on the tail, in order, in ``conn``'s transaction."""
        await lock_chain(conn)
        last = await hot_path.first_row(conn, _LAST, {})
        seq, prev = (0, GENESIS) if last is None else (int(last[0]), str(last[1]))
        rows = []
        for event in events:
            text = canonical_json(_clipped(event))
            seq, digest = seq + 1, keyed_hash(self._keys.signing, prev, text)
            rows.append(
                {
                    "seq": seq,
                    "at": event.at,
                    "tenant_id": clip(event.tenant_id, 64),
                    "key_id": clip(event.key_id, 128),
                    "event": text,
                    "prev_hash": prev,
                    "hash": digest,
                    "scheme": KEYED,
                }
            )
            prev = digest
        if len(rows) == 1:
            await hot_path.run(conn, _INSERT, rows[0])
        else:
            await conn.execute(_INSERT, rows)

    @guarded
    async def tail(self, n: int = 20, tenant: str | None = None) -> list[AuditRecord]:
        """The newest ``n`` records (of ``tenant``), oldest first."""
        query = sa.select(audit_log).order_by(audit_log.c.seq.desc()).limit(max(n, 0))
        if tenant is not None:
            query = query.where(audit_log.c.tenant_id == tenant)
        async with self._db.read() as conn:
            found = (await conn.execute(query)).all()
        return [_record(row) for row in reversed(found)]

    @guarded
    async def search(
        self,
        *,
        tenant: str | None = None,
        action: str | None = None,
        outcome: AuditOutcome | str | None = None,
        request_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> list[AuditRecord]:
        """The newest ``limit`` records matching every filter given (older than seq ``before``:
        the admin API's pages), oldest first. ``action``
        matches the vendor action (``redis:ResetPassword`` or just ``ResetPassword``) or the
        neutral one (``reset_password``)."""
        where: list[sa.ColumnElement[bool]] = []
        if tenant is not None:
            where.append(audit_log.c.tenant_id == tenant)
        if before is not None:
            where.append(audit_log.c.seq < before)
        if since is not None:
            where.append(audit_log.c.at >= since)
        if until is not None:
            where.append(audit_log.c.at < until)
        if action:
            vendor_action = self._field("action")
            where.append(
                sa.or_(
                    vendor_action == action,
                    _ends_with(vendor_action, ":" + action),
                    self._field("neutral_action") == action,
                )
            )
        if outcome:
            where.append(self._field("outcome") == str(outcome))
        if request_id:
            where.append(self._field("request_id") == request_id)
        query = sa.select(audit_log).where(*where).order_by(audit_log.c.seq.desc())
        async with self._db.read() as conn:
            found = (await conn.execute(query.limit(max(limit, 0)))).all()
        return [_record(row) for row in reversed(found)]

    @guarded
    async def verify(self) -> ChainCheck:
        """Walk the whole chain from record 1; stop at the first record that does not fit."""
        async with self._db.read() as conn:
            return await walk(conn, self._keys)

    @guarded
    async def state(self) -> ChainState:
        """The chain's two ends (two primary-key reads), to decide whether to re-key it."""
        async with self._db.read() as conn:
            first = (await conn.execute(_FIRST_ROW)).first()
            last = (await conn.execute(_LAST_ROW)).first()
        if first is None or last is None:
            return ChainState()
        foreign = (
            last.scheme == KEYED
            and not _keyed_under(self._keys.signing, last)
            and any(_keyed_under(key, last) for key in self._keys.verifying[1:])
        )
        return ChainState(
            unkeyed_start=first.scheme == LEGACY,
            unkeyed_tail=first.scheme != LEGACY and last.scheme == LEGACY,
            foreign_tail=foreign,
        )

    @guarded
    async def rekey(self) -> ChainRekey:
        """Re-key the whole chain under the signing key if it verifies from end to end;
        change nothing if it does not (the result names the first bad record)."""
        async with self._db.write() as conn:
            return await rekey_chain(conn, self._keys, self._keys.signing, partial=False)

    def _field(self, name: str) -> sa.ColumnElement[str]:
        """A text field of the stored event JSON, in SQL."""
        if self._db.sqlite:
            return sa.func.json_extract(audit_log.c.event, f"$.{name}", type_=sa.String())
        from sqlalchemy.dialects import postgresql  # loaded with the store's engine already

        field: sa.ColumnElement[str] = sa.cast(audit_log.c.event, postgresql.JSONB)[name].astext
        return field


def _ends_with(text: sa.ColumnElement[str], suffix: str) -> sa.ColumnElement[bool]:
    """``text`` ends with ``suffix``, case-sensitively on every backend (SQLite's LIKE ignores
    ASCII case, PostgreSQL's does not): compared as a substring, not a pattern."""
    start = sa.func.length(text) - len(suffix) + 1
    return sa.and_(start >= 1, sa.func.substr(text, start) == suffix)


async def lock_chain(conn: Connection) -> None:
    """Serialize writers of the chain (PostgreSQL; SQLite's BEGIN IMMEDIATE already does)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_APPEND_LOCK)))


async def _rows(conn: Connection, below: int | None = None) -> AsyncIterator[Any]:
    """Every record in seq order (those before seq ``below``), read in batches."""
    after = 0
    while True:
        query = sa.select(audit_log).where(audit_log.c.seq > after)
        if below is not None:
            query = query.where(audit_log.c.seq < below)
        rows = (await conn.execute(query.order_by(audit_log.c.seq).limit(_WALK_BATCH))).all()
        if not rows:
            return
        for row in rows:
            yield row
        after = int(rows[-1].seq)


async def walk(conn: Connection, keys: ChainKeys) -> ChainCheck:
    """Check the chain from record 1 under ``keys``; stop at the first record that does not
    fit."""
    chain = ChainWalk(keys)
    async for row in _rows(conn):
        if not chain.step(row):
            break
    return chain.result()


async def rekey_chain(
    conn: Connection, keys: ChainKeys, signing: bytes, *, partial: bool
) -> ChainRekey:
    """In the caller's write transaction: walk the chain under ``keys``, then rewrite its
    records under ``signing``: every record when the chain is intact; when it is not, nothing,
    or with ``partial`` the records before the first bad one (which keeps being reported: it
    no longer follows its rewritten predecessor). A record that did not verify is never
    rewritten."""
    await lock_chain(conn)
    check = await walk(conn, keys)
    if not check.intact and not partial:
        return ChainRekey(check=check, rekeyed=0, head_hash=check.head_hash)
    prev, rekeyed, changes = GENESIS, 0, []
    async for row in _rows(conn, below=check.bad_seq):
        link = keyed_hash(signing, prev, row.event)
        if (row.prev_hash, row.hash, row.scheme) != (prev, link, KEYED):
            changes.append({"b_seq": row.seq, "b_prev": prev, "b_hash": link, "b_s": KEYED})
        if len(changes) >= _REKEY_BATCH:
            rekeyed += await _relink(conn, changes)
        prev = link
    rekeyed += await _relink(conn, changes)
    return ChainRekey(check=check, rekeyed=rekeyed, head_hash=prev)


async def _relink(conn: Connection, changes: list[dict[str, Any]]) -> int:
    """Write ``changes`` (and empty the list); how many there were."""
    count = len(changes)
    if changes:
        await conn.execute(_RELINK, changes)
        changes.clear()
    return count


def _keyed_under(key: bytes, row: Any) -> bool:
    return hmac.compare_digest(keyed_hash(key, row.prev_hash, row.event), str(row.hash))


def _record(row: Any) -> AuditRecord:
    try:
        event = event_from_json(row.event)
    except (ValueError, TypeError, KeyError):
        raise InternalError(
            f"audit record {row.seq} is not a valid audit event (run `keyturn audit verify`)"
        ) from None
    return AuditRecord(
        seq=int(row.seq),
        event=event,
        prev_hash=str(row.prev_hash),
        hash=str(row.hash),
        scheme=str(row.scheme),
    )
