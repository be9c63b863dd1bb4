"""Overlap rotation on PostgreSQL, end to end: one password per role, so a secret in overlap
mode alternates between the account and its twin login role (``app`` / ``app_clone``, as KMS
``DoubleUsers``). After each scheduled rotation the current version names the other role,
both roles log in during the overlap, and once it ends only the current one does. The role
itself is created by the secret's first version (the inventory's "created when missing")."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from keyturn.core.secret_manager import FlowTrigger
from keyturn.core.secret_manager import VersionStage as Stage
from tests.support import secrets as support
from tests.support.keyturn_server import KeyturnServer
from tests.support.logins import can_login_postgres
from tests.support.postgres_server import PostgresServer
from tests.support.secrets import wait_for

pytestmark = pytest.mark.engine

INSTANCE = "postgres-secretoverlap"
NAME = "orders-pg"
PERIOD, OVERLAP = 6, 2


def test_postgres_overlap_alternates_between_twin_roles(
    make_server: Callable[..., KeyturnServer], postgres_server: PostgresServer
) -> None:
    # No role "app" yet: the secret's first version creates it (a plain LOGIN role).
    assert postgres_server.sql_value("SELECT count(*) FROM pg_roles WHERE rolname = 'app'") == 0
    env = {"KT_SECRET_PG_URL": postgres_server.url(), "KEYTURN_SECRET_TICK": "0.2"}
    server = make_server(extra_env=env)
    support.declare_secret(
        server,
        product="tencent-postgres",
        url_env="KT_SECRET_PG_URL",
        instance=INSTANCE,
        name=NAME,
        rotation=f"{PERIOD}s",
        overlap=f"{OVERLAP}s",
    )
    server.start()
    wait_for(lambda: bool(support.succeeded(server, NAME)), 20, "the first version")
    first = support.staged(server, NAME, Stage.CURRENT)
    assert first.account == "app"
    assert can_login_postgres(postgres_server.port, "app", first.password.reveal())
    rights = "SELECT rolsuper OR rolcreatedb OR rolcreaterole FROM pg_roles WHERE rolname = 'app'"
    assert postgres_server.sql_value(rights) is False

    def scheduled() -> int:
        done = support.succeeded(server, NAME)
        return len([f for f in done if f.trigger is FlowTrigger.SCHEDULE])

    wait_for(lambda: scheduled() >= 1, 2 * PERIOD + 15, "an overlap rotation")
    second = support.staged(server, NAME, Stage.CURRENT)
    assert second.account == "app_clone"
    port = postgres_server.port
    assert can_login_postgres(port, second.account, second.password.reveal())
    wait_for(lambda: scheduled() >= 2, 2 * PERIOD + 15, "a second overlap rotation")
    third = support.staged(server, NAME, Stage.CURRENT)
    previous = support.staged(server, NAME, Stage.PREVIOUS)
    assert (third.account, previous.account) == ("app", "app_clone")
    assert can_login_postgres(port, third.account, third.password.reveal())
    wait_for(lambda: support.flows(server, NAME)[0].drop_old_at is None, OVERLAP + 10, "the drop")
    wait_for(
        lambda: not can_login_postgres(port, previous.account, previous.password.reveal()),
        10,
        "the twin's password to expire",
    )
    assert can_login_postgres(port, third.account, third.password.reveal())
