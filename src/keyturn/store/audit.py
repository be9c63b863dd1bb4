"""``SqlAuditLog``: the tamper-evident ``AuditLog`` port on the store's ``audit_log`` table.

Records are hash-chained: record ``n`` stores ``prev_hash`` (record ``n-1``'s hash, 64 zeros for
record 1) and ``hash = sha256_hex(prev_hash + event)``, where ``event`` is the canonical JSON of
the ``AuditEvent`` (sorted keys, no spaces, ASCII, ``at`` as ISO-8601 UTC with a ``Z``). An
append reads the tail and inserts ``seq + 1`` in one write transaction, durable when it returns
(``synchronous=FULL``) and raising on any failure, so the gate can refuse a change whose record
cannot be written. ``verify`` walks the chain from record 1 and names the first record that was
edited, removed or moved. It detects changes inside the chain, not a cut of its newest records
or a chain rewritten from the cut on: keep ``head_hash`` somewhere else to catch those. The table
lives in the store's database and appends share the store's writer; events hold no secret, so
nothing here is sealed. Imports: ``keyturn.core``, SQLAlchemy and the standard library.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from keyturn.core.audit import AuditEvent, AuditOutcome
from keyturn.core.errors import InternalError
from keyturn.store.base import Connection, SqlBase, guarded
from keyturn.store.schema import audit_log

#: ``prev_hash`` of record 1.
GENESIS: Final = "0" * 64
#: Longest text kept of any event field: clients choose user agents and claimed key ids, and a
#: record's size must not be theirs to choose.
MAX_FIELD: Final = 512
#: Rows read per query by ``verify`` (memory stays flat however long the chain is).
_VERIFY_BATCH: Final = 2000
#: Key of the PostgreSQL advisory lock that serializes appends (arbitrary, fixed).
_PG_APPEND_LOCK: Final = 0x6B74_6175_6469_74

#: Statements built once: a statement built per call costs more than its commit.
_INSERT: Final = sa.insert(audit_log)
_LAST: Final = (
    sa.select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
)


def _text(value: str, limit: int = MAX_FIELD) -> str:
    # Clip, and replace what UTF-8 cannot encode (lone surrogates from percent-decoding).
    return value[:limit].encode("utf-8", "replace").decode("utf-8")


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(event: AuditEvent) -> str:
    """The exact text that is stored and hashed."""
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        fields[field.name] = _utc(value) if isinstance(value, datetime) else str(value)
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def chain_hash(prev_hash: str, event_json: str) -> str:
    return hashlib.sha256((prev_hash + event_json).encode("ascii")).hexdigest()


def event_from_json(text: str) -> AuditEvent:
    """Parse a stored event; ``ValueError`` (or ``TypeError``) if it is not one."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    data["at"] = datetime.fromisoformat(data["at"])
    data["outcome"] = AuditOutcome(data["outcome"])
    return AuditEvent(**data)


def _clipped(event: AuditEvent) -> AuditEvent:
    changes: dict[str, Any] = {
        f.name: _text(getattr(event, f.name))
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


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """What ``verify`` found: ``bad_seq`` is the first record that does not fit (None when the
    chain is intact), ``problem`` says why; ``head_hash`` is the last good record's hash."""

    records: int
    head_hash: str
    bad_seq: int | None = None
    problem: str = ""

    @property
    def intact(self) -> bool:
        return self.bad_seq is None


class _NoSecrets:
    """The audit log seals nothing: an ``AuditEvent`` has no field that could hold a secret."""

    def seal(self, plaintext: str, *, context: str) -> str:
        raise InternalError("the audit log stores no secrets")

    def unseal(self, token: str, *, context: str) -> str:
        raise InternalError("the audit log stores no secrets")


class SqlAuditLog(SqlBase):
    """The append-only, hash-chained audit log in ``store``'s database."""

    def __init__(self, store: SqlBase) -> None:
        super().__init__(store.engine, _NoSecrets(), store._clock)
        # One writer per process and database: appends queue on the store's own lock and
        # connection. A second connection would meet a store transaction in SQLite's busy
        # handler instead, which waits on the event loop thread (the inline engine) and so
        # could never let that transaction finish.
        self._writer, self._write_lock = store._writer, store._write_lock

    @guarded
    async def append(self, event: AuditEvent) -> None:
        text = canonical_json(_clipped(event))
        # Several writers, one chain. SQLite: ``_write`` opens BEGIN IMMEDIATE, which takes the
        # database's write lock before the tail is read, so two keyturn processes on one file
        # (or the server and a CLI) allocate seq numbers one after the other; the loser waits
        # in the busy handler. Inside one process the inline engine never suspends within a
        # transaction, so this log's writer and the store's never interleave. PostgreSQL's
        # READ COMMITTED would let two appends read the same tail (one would then fail on the
        # primary key): a transaction-scoped advisory lock serializes them instead.
        async with self._write() as conn:
            if not self._sqlite:
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_APPEND_LOCK)))
            last = (await conn.execute(_LAST)).first()
            seq, prev = (1, GENESIS) if last is None else (int(last.seq) + 1, str(last.hash))
            row = {
                "seq": seq,
                "at": event.at,
                "tenant_id": _text(event.tenant_id, 64),
                "key_id": _text(event.key_id, 128),
                "event": text,
                "prev_hash": prev,
                "hash": chain_hash(prev, text),
            }
            await conn.execute(_INSERT, row)

    @guarded
    async def tail(self, n: int = 20, tenant: str | None = None) -> list[AuditRecord]:
        """The newest ``n`` records (of ``tenant``), oldest first."""
        query = sa.select(audit_log).order_by(audit_log.c.seq.desc()).limit(max(n, 0))
        if tenant is not None:
            query = query.where(audit_log.c.tenant_id == tenant)
        async with self._read() as conn:
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
    ) -> list[AuditRecord]:
        """The newest ``limit`` records matching every filter given, oldest first. ``action``
        matches the vendor action (``redis:ResetPassword`` or just ``ResetPassword``) or the
        neutral one (``reset_password``)."""
        where: list[sa.ColumnElement[bool]] = []
        if tenant is not None:
            where.append(audit_log.c.tenant_id == tenant)
        if since is not None:
            where.append(audit_log.c.at >= since)
        if until is not None:
            where.append(audit_log.c.at < until)
        if action:
            vendor_action = self._field("action")
            where.append(
                sa.or_(
                    vendor_action == action,
                    vendor_action.endswith(":" + action, autoescape=True),
                    self._field("neutral_action") == action,
                )
            )
        if outcome:
            where.append(self._field("outcome") == str(outcome))
        if request_id:
            where.append(self._field("request_id") == request_id)
        query = sa.select(audit_log).where(*where).order_by(audit_log.c.seq.desc())
        async with self._read() as conn:
            found = (await conn.execute(query.limit(max(limit, 0)))).all()
        return [_record(row) for row in reversed(found)]

    @guarded
    async def verify(self) -> ChainCheck:
        """Walk the whole chain from record 1; stop at the first record that does not fit."""
        expected_seq, prev, count = 1, GENESIS, 0
        async with self._read() as conn:
            while True:
                rows = await _batch(conn, expected_seq - 1)
                if not rows:
                    return ChainCheck(records=count, head_hash=prev)
                for row in rows:
                    problem = _problem(row, expected_seq, prev)
                    if problem:
                        return ChainCheck(
                            records=count, head_hash=prev, bad_seq=int(row.seq), problem=problem
                        )
                    expected_seq, prev, count = expected_seq + 1, str(row.hash), count + 1

    def _field(self, name: str) -> sa.ColumnElement[str]:
        """A text field of the stored event JSON, in SQL."""
        if self._sqlite:
            return sa.func.json_extract(audit_log.c.event, f"$.{name}", type_=sa.String())
        field: sa.ColumnElement[str] = sa.cast(audit_log.c.event, postgresql.JSONB)[name].astext
        return field


async def _batch(conn: Connection, after: int) -> Sequence[Any]:
    query = (
        sa.select(audit_log)
        .where(audit_log.c.seq > after)
        .order_by(audit_log.c.seq)
        .limit(_VERIFY_BATCH)
    )
    return (await conn.execute(query)).all()


def _problem(row: Any, expected_seq: int, prev: str) -> str:
    """Why ``row`` does not continue a chain whose last good record is ``expected_seq - 1``
    with hash ``prev``; empty if it does."""
    seq = int(row.seq)
    if seq != expected_seq:
        missing = (
            f"record {expected_seq} is missing"
            if seq == expected_seq + 1
            else f"records {expected_seq} to {seq - 1} are missing"
        )
        return f"{missing} (removed): the sequence jumps from {expected_seq - 1} to {seq}"
    if row.prev_hash != prev:
        before = "the chain start" if seq == 1 else f"record {seq - 1}'s hash"
        return f"its prev_hash is not {before} (a record was removed or moved)"
    if row.hash != chain_hash(row.prev_hash, row.event):
        return "its hash does not match its content (the record was edited)"
    try:
        event = event_from_json(row.event)
    except (ValueError, TypeError, KeyError):
        return "its event is not a valid audit event"
    if (row.tenant_id, row.key_id) != (_text(event.tenant_id, 64), _text(event.key_id, 128)):
        return "its tenant_id or key_id column differs from its event (the record was edited)"
    if row.at != event.at:
        return "its at column differs from its event (the record was edited)"
    return ""


def _record(row: Any) -> AuditRecord:
    try:
        event = event_from_json(row.event)
    except (ValueError, TypeError, KeyError):
        raise InternalError(
            f"audit record {row.seq} is not a valid audit event (run `keyturn audit verify`)"
        ) from None
    return AuditRecord(
        seq=int(row.seq), event=event, prev_hash=str(row.prev_hash), hash=str(row.hash)
    )
