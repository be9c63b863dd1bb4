"""``drop_old = "when-unused"`` on MariaDB, end to end (``keyturn serve`` with an inventory
``[[secrets]]``): MariaDB records no connection start, so the rotation's connection-id
watermark tells the application session opened with the old password before the rotation
(kept: the old password stays; ``keyturn sessions --json`` lists it by name and address) from
one opened with the new password after it (no reason to keep it); once the old session closes
the old password is dropped within a few scheduler ticks, long before the overlap's end (1 h),
and the new session keeps working."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from keyturn.core.model import EngineKind
from keyturn.core.secret_manager import FlowTrigger, RotationFlow
from keyturn.core.secret_manager import VersionStage as Stage
from tests.support import secrets as support
from tests.support.app_sessions import open_app_session
from tests.support.cli import keyturn_cli as keyturn
from tests.support.fixtures import MariaDBServerFactory
from tests.support.keyturn_server import TENANT, KeyturnServer
from tests.support.logins import can_login_mysql
from tests.support.mysql_server import MariaDBServer
from tests.support.passwords import new_password
from tests.support.secrets import wait_for
from tests.support.sql_admin import create_user

pytestmark = pytest.mark.engine

INSTANCE = "tdsql-oldsess1"
NAME = "orders-mariadb"
ACCOUNT = "app@%"


@pytest.fixture
def mariadb_server(mariadb_server_factory: MariaDBServerFactory) -> MariaDBServer:
    """With the performance schema on: sessions are named (``program_name``)."""
    return mariadb_server_factory(performance_schema=True)


def test_when_unused_on_mariadb_waits_for_the_session_opened_before_the_rotation(
    make_server: Callable[..., KeyturnServer], mariadb_server: MariaDBServer
) -> None:
    create_user(mariadb_server, "app", "%", new_password())
    env = {"KT_SECRET_MYSQL_URL": mariadb_server.url(), "KEYTURN_SECRET_TICK": "0.2"}
    server = make_server(extra_env=env)
    support.declare_secret(
        server,
        product="tencent-tdmysql",
        url_env="KT_SECRET_MYSQL_URL",
        instance=INSTANCE,
        name=NAME,
        rotation="2d",
        overlap="1h",
        account=ACCOUNT,
        fields='drop_old = "when-unused"\n',
    )
    server.start()
    wait_for(lambda: bool(support.succeeded(server, NAME)), 20, "the first version")
    port = mariadb_server.port
    old = support.staged(server, NAME, Stage.CURRENT).password.reveal()
    before = open_app_session(EngineKind.MYSQL, port, ACCOUNT, old, "billing-app")
    after = None
    try:
        done = keyturn(server.data_dir, "secrets", "rotate-now", TENANT, NAME)
        assert done.returncode == 0, done.stderr

        def rotations() -> list[RotationFlow]:
            return [f for f in support.succeeded(server, NAME) if f.trigger is FlowTrigger.MANUAL]

        wait_for(lambda: bool(rotations()), 20, "the rotation asked for")
        rotated = rotations()[0]
        new = support.staged(server, NAME, Stage.CURRENT).password.reveal()
        after = open_app_session(EngineKind.MYSQL, port, ACCOUNT, new, "fresh-app")

        def pending() -> bool:
            [flow] = [f for f in support.flows(server, NAME) if f.flow_id == rotated.flow_id]
            return flow.drop_old_at is not None

        time.sleep(2.0)  # ten ticks with the old session open
        assert pending()
        # What the operator sees: the old session by its name and address, the new one not.
        shown = keyturn(server.data_dir, "sessions", INSTANCE, ACCOUNT, "--json")
        assert shown.returncode == 0, shown.stderr
        report = json.loads(shown.stdout)
        verdicts = {s["id"]: (s["old"], s["old_by"]) for s in report["sessions"]}
        assert verdicts == {before.id: (True, "connection_id"), after.id: (False, "connection_id")}
        [old_one] = [s for s in report["sessions"] if s["old"]]
        assert (old_one["client_name"], old_one["client_addr"]) == ("billing-app", before.addr)
        assert report["old"] == 1 and len(report["marks"]) == 1
        shown = keyturn(server.data_dir, "secrets", "show", TENANT, NAME)
        assert "when-unused" in shown.stdout, shown.stdout
        assert can_login_mysql(port, "app", old) and can_login_mysql(port, "app", new)
        before.close()
        wait_for(lambda: not pending(), 10, "the early drop")
        wait_for(lambda: not can_login_mysql(port, "app", old), 10, "the old password gone")
        assert can_login_mysql(port, "app", new)
        assert after.alive()
    finally:
        before.close()
        if after is not None:
            after.close()
