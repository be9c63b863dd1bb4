"""Managed secrets on a real MariaDB, end to end through ``keyturn serve`` and an inventory
``[[secrets]]``: the account the secret holds is created when missing (``'app'@'%'``, the host
a reset names, with ``USAGE`` only; audited), then rotates on its schedule. Replace mode: after
a rotation only the new password logs in. Overlap mode (a MariaDB authentication chain): an
application that keeps reconnecting with whatever password it last fetched never fails a login
across three rotations, and the replaced passwords stop working once the overlap ends."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from keyturn.core.secret_manager import FlowTrigger
from keyturn.core.secret_manager import VersionStage as Stage
from tests.support import secrets as support
from tests.support.cli import audit_records
from tests.support.keyturn_server import KeyturnServer
from tests.support.mysql_server import MariaDBServer
from tests.support.sql_replication import my_logs_in

pytestmark = pytest.mark.engine

INSTANCE = "tdsql3-secretmaria"


def start(
    make_server: Callable[..., KeyturnServer],
    mariadb: MariaDBServer,
    *,
    name: str,
    period: int,
    overlap: int | None = None,
) -> KeyturnServer:
    """keyturn serving a secret of ``app`` on ``mariadb``, which has no such account yet."""
    assert "app" not in mariadb.socket_sql("SELECT User FROM mysql.user;")
    server = make_server(
        extra_env={"KT_SECRET_MY_URL": mariadb.url(), "KEYTURN_SECRET_TICK": "0.2"}
    )
    support.declare_secret(
        server,
        product="tencent-tdmysql",
        url_env="KT_SECRET_MY_URL",
        instance=INSTANCE,
        name=name,
        rotation=f"{period}s",
        overlap=None if overlap is None else f"{overlap}s",
    )
    server.start()
    support.wait_for(lambda: bool(support.succeeded(server, name)), 20, "the first version")
    return server


def test_the_missing_account_is_created_then_replaced_on_schedule(
    make_server: Callable[..., KeyturnServer], mariadb_server: MariaDBServer
) -> None:
    name, period = "orders-maria", 4
    server = start(make_server, mariadb_server, name=name, period=period)
    first = support.staged(server, name, Stage.CURRENT)
    assert first.account == "app"
    assert my_logs_in(mariadb_server, "app", first.password.reveal())
    grants = mariadb_server.socket_sql("SHOW GRANTS FOR 'app'@'%';")
    assert "GRANT USAGE ON *.* TO `app`@`%`" in grants and grants.count("GRANT ") == 1

    def rotated() -> bool:
        flows = support.succeeded(server, name)
        return any(f.trigger is FlowTrigger.SCHEDULE for f in flows)

    support.wait_for(rotated, 3 * period + 10, "a scheduled rotation")
    current = support.staged(server, name, Stage.CURRENT).password.reveal()
    assert current != first.password.reveal()
    assert my_logs_in(mariadb_server, "app", current)
    assert not my_logs_in(mariadb_server, "app", first.password.reveal())
    # (Checked after the rotation: a replace-mode password stops working as soon as the next
    # rotation's task applies, so the logins above run right after a rotation, not later.)
    records = audit_records(server, "search", "--action", "create_account", "--limit", "100")
    [created] = [r for r in records if r["outcome"] == "started"]
    assert created["request_id"] == support.succeeded(server, name)[-1].flow_id
    text = server.log() + mariadb_server.general_log_text() + mariadb_server.binlog_text()
    assert first.password.reveal() not in text and current not in text


def test_three_overlap_rotations_without_a_failed_login(
    make_server: Callable[..., KeyturnServer], mariadb_server: MariaDBServer
) -> None:
    name, period, overlap = "orders-maria-overlap", 4, 2
    server = start(make_server, mariadb_server, name=name, period=period, overlap=overlap)
    run = support.application_loop(
        server,
        name,
        lambda password: my_logs_in(mariadb_server, "app", password),
        rotations=3,
        timeout=3 * period + 15,
    )
    assert run.failures == 0, (run.logins, run.failures)
    assert len(run.seen) >= 4, "three rotations after the first version"
    assert run.overlap_checked
    support.wait_for(
        lambda: support.flows(server, name)[0].drop_old_at is None, overlap + 10, "the drop"
    )
    now = support.staged(server, name, Stage.CURRENT).password.reveal()
    assert my_logs_in(mariadb_server, "app", now)
    for old in run.seen - {now}:
        assert not my_logs_in(mariadb_server, "app", old)
    text = server.log() + mariadb_server.general_log_text() + mariadb_server.binlog_text()
    assert all(p not in text for p in run.seen)
