"""Store latency labels: a statement's kind from a fixed set (its text never a label), and
``observe_statements`` timing what runs through an engine (an in-memory SQLite one here)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from keyturn.store.observe import observe_statements, statement_kind
from tests.support.fakes import RecordingMetrics


@pytest.mark.parametrize(
    ("statement", "kind"),
    [
        ("SELECT tasks.id FROM tasks WHERE tasks.id = ?", "select"),
        ("  insert INTO audit_log VALUES (?)", "insert"),
        ("UPDATE tasks SET state = ?", "update"),
        ("DELETE FROM replay_nonces", "delete"),
        ("BEGIN IMMEDIATE", "begin"),
        ("PRAGMA journal_mode=WAL", "pragma"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "with"),
        ("VACUUM", "other"),
        ("SELECTX 1", "other"),
        ("", "other"),
        ("password='hunter2'", "other"),
    ],
)
def test_statement_kinds(statement: str, kind: str) -> None:
    assert statement_kind(statement) == kind


def test_statements_through_an_engine_are_timed() -> None:
    engine = sa.create_engine("sqlite://")
    recorder = RecordingMetrics()
    observe_statements(engine, recorder)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
        conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        assert conn.execute(sa.text("SELECT x FROM t")).scalar() == 1
    # Engines made with execution options (the store's writer) share the listeners.
    with engine.execution_options(isolation_level="SERIALIZABLE").connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    engine.dispose()
    assert recorder.of("store_statement") == [("other",), ("insert",), ("select",), ("select",)]
    assert all(seconds >= 0 for seconds in recorder.seconds)
