"""Contract tests of ``SqlAuditLog`` on a real SQLite store file: records are chained and keyed
as documented (HMAC-SHA256 under a key derived from the master key, checked against an
independent computation), reads filter as the CLI needs, and ``verify`` names the first record
that was edited, removed, moved, re-hashed without the key or downgraded to the unkeyed scheme
by raw SQL on the file. A legacy (unkeyed) chain is re-keyed at start-up only if it verifies,
and only until the chain has been keyed once. A write that cannot be stored raises (the gate's
fail-closed rule depends on it), and two processes appending to one file keep one unbroken
chain."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import logging
import os
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keyturn.core.audit import AuditEvent, AuditOutcome
from keyturn.core.errors import InternalError
from keyturn.store.audit import SqlAuditLog
from keyturn.store.audit_chain import GENESIS, MAX_FIELD, ChainKeys
from keyturn.store.audit_keying import KEYED_MARKER, open_audit_log, start_audit_log
from keyturn.store.opening import open_store
from keyturn.store.sealing import AesGcmSecretBox
from keyturn.store.sql import SqlStore
from tests.support.fakes import FakeClock
from tests.support.store_backends import RawSql, StoreBackend

T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
MASTER = b"k" * 32
#: The chain key, derived here independently of keyturn's code, as documented.
CHAIN_KEY = HKDF(
    algorithm=hashes.SHA256(), length=32, salt=None, info=b"keyturn audit chain v1"
).derive(MASTER)


def event(n: int, **changes: object) -> AuditEvent:
    base = AuditEvent(
        at=T0 + timedelta(seconds=n),
        tenant_id="1300000001" if n % 2 else "1300000002",
        key_id="AKIDkeyturnTEST0001",
        source_ip="127.0.0.1",
        user_agent="TencentCloudSDK/3.0",
        vendor="tencent",
        action="redis:ResetPassword" if n % 3 else "redis:DescribeTaskInfo",
        neutral_action="reset_password" if n % 3 else "",
        resource=f"qcs::redis:ap-guangzhou:uin/1300000001:instance/crs-{n:08d}",
        outcome=AuditOutcome.SUCCEEDED if n % 4 else AuditOutcome.DENIED,
        error_code="" if n % 4 else "AuthFailure.UnauthorizedOperation",
        request_id=f"req-{n}",
        task_id=str(n) if n % 3 else "",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
async def store(store_backend: StoreBackend) -> AsyncIterator[SqlStore]:
    opened = await open_store(store_backend.url, AesGcmSecretBox(MASTER), FakeClock(T0))
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def audit(store: SqlStore) -> SqlAuditLog:
    return SqlAuditLog(store)


@contextmanager
def raw(db: StoreBackend) -> Iterator[RawSql]:
    """The database as an attacker with write access sees it."""
    with db.raw() as conn:
        yield conn


async def fill(audit: SqlAuditLog, count: int) -> None:
    for n in range(1, count + 1):
        await audit.append(event(n))


def expected_json(e: AuditEvent) -> str:
    """The documented canonical form, written out independently of the implementation."""
    return json.dumps(
        {
            "action": e.action,
            "at": e.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "error_code": e.error_code,
            "key_id": e.key_id,
            "neutral_action": e.neutral_action,
            "outcome": e.outcome.value,
            "request_id": e.request_id,
            "resource": e.resource,
            "source_ip": e.source_ip,
            "task_id": e.task_id,
            "tenant_id": e.tenant_id,
            "user_agent": e.user_agent,
            "vendor": e.vendor,
        },
        separators=(",", ":"),
    )


def mac(prev: str, text: str, key: bytes = CHAIN_KEY) -> str:
    return hmac.new(key, (prev + text).encode(), hashlib.sha256).hexdigest()


def sha256(prev: str, text: str) -> str:
    return hashlib.sha256((prev + text).encode()).hexdigest()


async def test_records_are_chained_as_documented(
    audit: SqlAuditLog, tmp_path: Path, store_backend: StoreBackend
) -> None:
    await fill(audit, 5)
    with raw(store_backend) as conn:
        rows = conn.execute(
            "SELECT seq, event, prev_hash, hash, scheme FROM audit_log ORDER BY seq"
        ).fetchall()
    assert [row[0] for row in rows] == [1, 2, 3, 4, 5]
    prev = "0" * 64
    for n, (_seq, text, prev_hash, digest, scheme) in enumerate(rows, start=1):
        assert text == expected_json(event(n))
        assert prev_hash == prev
        assert digest == mac(prev, text) and scheme == "hmac-sha256"
        prev = digest
    check = await audit.verify()
    assert check.intact and check.records == 5 and check.head_hash == prev
    assert check.legacy == 0


async def test_an_empty_log_is_intact(audit: SqlAuditLog) -> None:
    check = await audit.verify()
    assert check.intact and check.records == 0 and check.head_hash == GENESIS


async def test_tail_returns_the_newest_records_oldest_first(audit: SqlAuditLog) -> None:
    await fill(audit, 7)
    assert [r.seq for r in await audit.tail(3)] == [5, 6, 7]
    assert [r.seq for r in await audit.tail(3, tenant="1300000002")] == [2, 4, 6]
    assert [r.event for r in await audit.tail(1)] == [event(7)]
    assert await audit.tail(5, tenant="nobody") == []


async def test_search_filters(audit: SqlAuditLog) -> None:
    await fill(audit, 12)

    async def seqs(**filters: object) -> list[int]:
        return [r.seq for r in await audit.search(**filters)]  # type: ignore[arg-type]

    assert await seqs() == list(range(1, 13))
    assert await seqs(tenant="1300000001") == [1, 3, 5, 7, 9, 11]
    # The vendor action, qualified or not, or the neutral one.
    resets = [n for n in range(1, 13) if n % 3]
    assert await seqs(action="redis:ResetPassword") == resets
    assert await seqs(action="ResetPassword") == resets
    assert await seqs(action="reset_password") == resets
    assert await seqs(action="Reset") == []
    # Action names are case-sensitive on every backend (SQLite's LIKE is not).
    assert await seqs(action="resetpassword") == []
    assert await seqs(action="redis:resetPassword") == []
    assert await seqs(outcome=AuditOutcome.DENIED) == [4, 8, 12]
    assert await seqs(outcome="denied", tenant="1300000002") == [4, 8, 12]
    assert await seqs(request_id="req-5") == [5]
    assert await seqs(since=T0 + timedelta(seconds=10)) == [10, 11, 12]
    assert await seqs(until=T0 + timedelta(seconds=3)) == [1, 2]
    assert await seqs(limit=2) == [11, 12]
    # Pages of the admin API: older than a seq, newest of them first in ``limit``.
    assert await seqs(limit=2, before=11) == [9, 10]
    assert await seqs(limit=3, before=8, tenant="1300000001") == [3, 5, 7]
    assert await seqs(before=1) == []


def tamper_edit_event(conn: RawSql) -> None:
    conn.execute("UPDATE audit_log SET event = replace(event, 'succeeded', 'failed') WHERE seq = 3")


def tamper_edit_column(conn: RawSql) -> None:
    # Hides record 3 from a tenant search without touching the hashed event.
    conn.execute("UPDATE audit_log SET tenant_id = 'someone' WHERE seq = 3")


def rehash_from(conn: RawSql, first: int, link: object, scheme: str) -> None:
    """Rewrite records ``first`` on, ``succeeded`` edited to ``failed``, with hashes made by
    ``link(prev, text)`` and chained as an attacker without the key would."""
    prev = conn.execute("SELECT prev_hash FROM audit_log WHERE seq = ?", (first,)).fetchone()[0]
    rows = conn.execute(
        "SELECT seq, event FROM audit_log WHERE seq >= ? ORDER BY seq", (first,)
    ).fetchall()
    for seq, text in rows:
        edited = text.replace("succeeded", "failed")
        digest = link(prev, edited)  # type: ignore[operator]
        conn.execute(
            "UPDATE audit_log SET event = ?, hash = ?, prev_hash = ?, scheme = ? WHERE seq = ?",
            (edited, digest, prev, scheme, seq),
        )
        prev = digest


def tamper_rehash_one(conn: RawSql) -> None:
    # Edit record 3 and re-hash the chain from there with plain SHA-256, scheme unchanged.
    rehash_from(conn, 3, sha256, "hmac-sha256")


def tamper_rehash_wrong_key(conn: RawSql) -> None:
    # The same with HMAC under a key of the attacker's own.
    rehash_from(conn, 3, lambda p, t: mac(p, t, b"attacker" * 4), "hmac-sha256")


def tamper_downgrade_tail(conn: RawSql) -> None:
    # Records 4 on rewritten as if written before the chain was keyed.
    rehash_from(conn, 4, sha256, "sha256")


def tamper_downgrade_whole(conn: RawSql) -> None:
    # The whole chain rewritten unkeyed: only the data dir's marker tells it from a legacy one.
    rehash_from(conn, 1, sha256, "sha256")


def tamper_scheme(conn: RawSql) -> None:
    conn.execute("UPDATE audit_log SET scheme = 'plain' WHERE seq = 2")


def tamper_delete_middle(conn: RawSql) -> None:
    conn.execute("DELETE FROM audit_log WHERE seq = 3")


def tamper_delete_first(conn: RawSql) -> None:
    conn.execute("DELETE FROM audit_log WHERE seq = 1")


def tamper_delete_and_renumber(conn: RawSql) -> None:
    # Remove record 3 and close the gap, so the sequence looks whole.
    conn.execute("DELETE FROM audit_log WHERE seq = 3")
    conn.execute("UPDATE audit_log SET seq = seq - 1 WHERE seq > 3")


def tamper_swap(conn: RawSql) -> None:
    # Records 2 and 3 trade places: every column but seq is exchanged.
    columns = "at, tenant_id, key_id, event, prev_hash, hash"
    two = conn.execute(f"SELECT {columns} FROM audit_log WHERE seq = 2").fetchone()
    three = conn.execute(f"SELECT {columns} FROM audit_log WHERE seq = 3").fetchone()
    update = (
        "UPDATE audit_log SET at = ?, tenant_id = ?, key_id = ?, event = ?, prev_hash = ?, "
        "hash = ? WHERE seq = ?"
    )
    conn.execute(update, (*three, 2))
    conn.execute(update, (*two, 3))


@pytest.mark.parametrize(
    ("tamper", "bad_seq", "intact_before", "words"),
    [
        (tamper_edit_event, 3, 2, "edited"),
        (tamper_edit_column, 3, 2, "tenant_id"),
        (tamper_rehash_one, 3, 2, "MAC does not match"),
        (tamper_rehash_wrong_key, 3, 2, "MAC does not match"),
        (tamper_downgrade_tail, 4, 3, "downgraded"),
        (tamper_downgrade_whole, 1, 0, "has been keyed"),
        (tamper_scheme, 2, 1, "unknown"),
        (tamper_delete_middle, 4, 2, "record 3 is missing"),
        (tamper_delete_first, 2, 0, "record 1 is missing"),
        (tamper_delete_and_renumber, 3, 2, "prev_hash"),
        (tamper_swap, 2, 1, "prev_hash"),
    ],
    ids=lambda value: getattr(value, "__name__", str(value)),
)
async def test_verify_names_the_first_bad_record(
    store: SqlStore,
    audit: SqlAuditLog,
    tmp_path: Path,
    tamper: object,
    bad_seq: int,
    intact_before: int,
    words: str,
    store_backend: StoreBackend,
) -> None:
    await fill(audit, 6)
    with raw(store_backend) as conn:
        tamper(conn)  # type: ignore[operator]
    # The data dir's rule, as the server and the CLI read it: this chain was keyed.
    (tmp_path / KEYED_MARKER).touch()
    check = await open_audit_log(store, tmp_path).verify()
    assert not check.intact
    assert check.bad_seq == bad_seq, check
    assert words in check.problem, check
    # Everything before the bad record still checks out.
    assert check.records == intact_before


def make_legacy(conn: RawSql) -> None:
    """Turn the chain into what keyturn wrote before it was keyed: same events, plain SHA-256
    links, scheme ``sha256`` (migration 0006's default for existing rows)."""
    prev = GENESIS
    for seq, text in conn.execute("SELECT seq, event FROM audit_log ORDER BY seq").fetchall():
        digest = sha256(prev, text)
        conn.execute(
            "UPDATE audit_log SET prev_hash = ?, hash = ?, scheme = 'sha256' WHERE seq = ?",
            (prev, digest, seq),
        )
        prev = digest


def links(db: StoreBackend) -> list[tuple[str, str, str]]:
    with raw(db) as conn:
        rows = conn.execute("SELECT prev_hash, hash, scheme FROM audit_log ORDER BY seq")
        return [tuple(row) for row in rows.fetchall()]


def keyed_links(db: StoreBackend, key: bytes = CHAIN_KEY) -> list[tuple[str, str, str]]:
    """The links every record must have once the chain is keyed under ``key``."""
    with raw(db) as conn:
        texts = [
            row[0] for row in conn.execute("SELECT event FROM audit_log ORDER BY seq").fetchall()
        ]
    expected, prev = [], GENESIS
    for text in texts:
        expected.append((prev, mac(prev, text, key), "hmac-sha256"))
        prev = expected[-1][1]
    return expected


async def test_a_legacy_chain_is_rekeyed_once_at_start(
    store: SqlStore,
    audit: SqlAuditLog,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    store_backend: StoreBackend,
) -> None:
    await fill(audit, 6)
    with raw(store_backend) as conn:
        make_legacy(conn)
    legacy_head = links(store_backend)[-1][1]
    before = await open_audit_log(store, tmp_path).verify()
    assert before.intact and before.records == before.legacy == 6
    assert before.head_hash == legacy_head

    with caplog.at_level(logging.WARNING):
        started = await start_audit_log(store, tmp_path)
    assert links(store_backend) == keyed_links(store_backend)
    assert (tmp_path / KEYED_MARKER).exists()
    [message] = [r.getMessage() for r in caplog.records if "re-keyed" in r.getMessage()]
    assert "6 of 6 record(s) rewritten (6 were unkeyed)" in message
    assert f"{legacy_head[:16]}... is now {links(store_backend)[-1][1][:16]}..." in message
    check = await started.verify()
    assert check.intact and check.records == 6 and check.legacy == 0
    await started.append(event(7))
    assert (await started.verify()).records == 7

    # Once keyed, a second start changes nothing...
    caplog.clear()
    await start_audit_log(store, tmp_path)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # ...and a chain rewritten unkeyed from record 1 on is not a legacy chain any more: it is
    # neither re-keyed nor reported intact.
    with raw(store_backend) as conn:
        make_legacy(conn)
    forged = links(store_backend)
    with caplog.at_level(logging.WARNING):
        await start_audit_log(store, tmp_path)
    assert links(store_backend) == forged
    assert any("TAMPERED" in r.getMessage() for r in caplog.records)
    check = await open_audit_log(store, tmp_path).verify()
    assert check.bad_seq == 1 and "has been keyed" in check.problem


async def test_a_broken_legacy_chain_is_not_rekeyed(
    store: SqlStore,
    audit: SqlAuditLog,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    store_backend: StoreBackend,
) -> None:
    await fill(audit, 6)
    with raw(store_backend) as conn:
        make_legacy(conn)
        tamper_edit_event(conn)
    before = links(store_backend)
    for _ in range(2):  # every start says so
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            started = await start_audit_log(store, tmp_path)
        [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert "AUDIT LOG BROKEN" in error.getMessage() and " 3 " in error.getMessage()
        assert links(store_backend)[:6] == before
        assert not (tmp_path / KEYED_MARKER).exists()
        # The server goes on, and keyed records follow; verify keeps naming the break.
        await started.append(event(9))
        check = await open_audit_log(store, tmp_path).verify()
        assert (check.bad_seq, check.records) == (3, 2) and "edited" in check.problem


async def test_a_chain_under_a_retired_master_key_is_rekeyed_at_start(
    store: SqlStore, audit: SqlAuditLog, tmp_path: Path, store_backend: StoreBackend
) -> None:
    """An interrupted rotation: the chain is under the key the store is being moved away
    from (or to); the server's sealing key takes it over, after the chain verified."""
    await fill(audit, 4)
    other = bytes(range(32))
    moved = await open_store(
        store_backend.url, AesGcmSecretBox(other, retired=[MASTER]), FakeClock(T0)
    )
    try:
        assert (await SqlAuditLog(moved).verify()).intact  # the retired key verifies
        assert (await SqlAuditLog(moved).state()).foreign_tail
        await start_audit_log(moved, tmp_path)
        other_key = ChainKeys.of(AesGcmSecretBox(other)).signing
        assert links(store_backend) == keyed_links(store_backend, other_key)
        assert (await SqlAuditLog(moved, ChainKeys(other_key, (other_key,))).verify()).intact
    finally:
        await moved.close()
    # The old key alone verifies nothing any more.
    check = await audit.verify()
    assert check.bad_seq == 1 and "MAC" in check.problem


async def test_start_up_shouts_about_a_downgraded_tail(
    store: SqlStore,
    audit: SqlAuditLog,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    store_backend: StoreBackend,
) -> None:
    started = await start_audit_log(store, tmp_path)  # empty: keyed from the start
    assert (tmp_path / KEYED_MARKER).exists()
    await fill(started, 5)
    with raw(store_backend) as conn:
        tamper_downgrade_tail(conn)
    with caplog.at_level(logging.WARNING):
        await start_audit_log(store, tmp_path)
    assert any("newest record is unkeyed" in r.getMessage() for r in caplog.records)
    check = await open_audit_log(store, tmp_path).verify()
    assert check.bad_seq == 4 and "downgraded" in check.problem


async def test_an_unwritable_log_raises_and_keeps_the_chain(
    audit: SqlAuditLog, tmp_path: Path, store_backend: StoreBackend
) -> None:
    await fill(audit, 2)
    with raw(store_backend) as conn:
        if store_backend.sqlite:
            conn.execute(
                "CREATE TRIGGER no_audit BEFORE INSERT ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'x'); END"
            )
        else:
            conn.execute(
                "CREATE FUNCTION no_audit() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'x'; END $$"
            )
            conn.execute(
                "CREATE TRIGGER no_audit BEFORE INSERT ON audit_log "
                "FOR EACH ROW EXECUTE FUNCTION no_audit()"
            )
    with pytest.raises(InternalError):
        await audit.append(event(3))
    with raw(store_backend) as conn:
        conn.execute("DROP TRIGGER no_audit" + ("" if store_backend.sqlite else " ON audit_log"))
    await audit.append(event(3))
    check = await audit.verify()
    assert check.intact and check.records == 3


async def test_client_chosen_fields_are_clipped_and_stored_safely(audit: SqlAuditLog) -> None:
    # A user agent of any size and a claimed key id with a lone surrogate (percent-decoding
    # can produce one) must neither fail the append nor bloat the record.
    await audit.append(event(1, user_agent="A" * 100_000, key_id="AKID\udcff" + "k" * 600))
    [record] = await audit.tail(1)
    assert record.event.user_agent == "A" * MAX_FIELD
    assert record.event.key_id.startswith("AKID?") and len(record.event.key_id) == MAX_FIELD
    assert (await audit.verify()).intact


async def test_appends_in_flight_share_commits_and_keep_one_chain(
    store: SqlStore, audit: SqlAuditLog
) -> None:
    # SQLite's group commit, PostgreSQL's batches (``keyturn.store.audit_batches``): one
    # chain in the order the appends came, fewer commits than records.
    commits: list[int] = []
    sa.event.listen(store.db.engine.sync_engine, "commit", lambda _c: commits.append(1))
    await asyncio.gather(*(audit.append(event(n)) for n in range(1, 41)))
    check = await audit.verify()
    assert check.intact and check.records == 40
    assert [r.event.request_id for r in await audit.tail(40)] == [f"req-{n}" for n in range(1, 41)]
    assert 1 <= len(commits) < 40


APPENDER = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import UTC, datetime
    from keyturn.core.audit import AuditEvent, AuditOutcome
    from keyturn.service.context import SystemClock
    from keyturn.store.audit import SqlAuditLog
    from keyturn.store.sealing import AesGcmSecretBox
    from keyturn.store.opening import open_store

    async def main(url, name, count):
        store = await open_store(url, AesGcmSecretBox(b"k" * 32), SystemClock())
        log = SqlAuditLog(store)
        for n in range(count):
            await log.append(AuditEvent(
                at=datetime.now(UTC), tenant_id=name, key_id="k", source_ip="", user_agent="",
                vendor="tencent", action="redis:ResetPassword", neutral_action="reset_password",
                resource="r", outcome=AuditOutcome.STARTED, request_id=f"{name}-{n}"))
            await asyncio.sleep(0.001)
        await store.close()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


async def test_two_processes_keep_one_chain(
    store: SqlStore, audit: SqlAuditLog, tmp_path: Path, store_backend: StoreBackend
) -> None:
    """Several processes, one chain: BEGIN IMMEDIATE serializes seq allocation across
    processes sharing the SQLite file, a transaction-scoped advisory lock on PostgreSQL."""
    url, count = store_backend.url, 80
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", APPENDER, url, name, str(count), env=dict(os.environ)
        )
        for name in ("p1", "p2")
    ]
    # This process appends too, until both children are done.
    mine = 0
    while any(proc.returncode is None for proc in procs):
        await audit.append(event(1, request_id=f"p0-{mine}"))
        mine += 1
        await asyncio.sleep(0.002)
    assert [await proc.wait() for proc in procs] == [0, 0]
    total = 2 * count + mine
    check = await audit.verify()
    assert check.intact and check.records == total
    records = await audit.tail(total)
    assert [r.seq for r in records] == list(range(1, total + 1))
    writers = [r.event.request_id.split("-")[0] for r in records]
    assert writers.count("p1") == writers.count("p2") == count
    # The children really wrote at the same time: their records interleave.
    switches = sum(1 for a, b in itertools.pairwise(writers) if a != b)
    assert switches > 4, writers


async def test_sequence_numbers_go_past_32_bits(
    audit: SqlAuditLog, store_backend: StoreBackend
) -> None:
    """One record per signed call: at a thousand calls a second a 32-bit ``seq`` runs out in
    under a month (migration 0017 made it 64-bit on PostgreSQL; SQLite's rowid always was)."""
    await fill(audit, 2)
    with raw(store_backend) as conn:
        conn.execute("UPDATE audit_log SET seq = seq + ?", (2**31,))
    await audit.append(event(3))
    assert [r.seq for r in await audit.tail(3)] == [2**31 + 1, 2**31 + 2, 2**31 + 3]
