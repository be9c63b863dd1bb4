"""An overlap rotation's old password and the sessions still using it, end to end: ``keyturn
serve`` with an inventory ``[[secrets]]`` on a real Redis.

``drop_old = "when-unused"``: after a rotation (``secrets rotate-now``), the old password keeps
working while an application session opened with it before the rotation stays open, although
a session opened after it with the new password is open too; once that old session closes, the
old password is dropped within a few scheduler ticks, long before the overlap's end (1 h).
``end_old_sessions = true``: at the overlap's end the two sessions opened with the old password
are ended (the audit log records the count, 2), the one opened with the new password is not,
and the old password is dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from keyturn.core.model import EngineKind
from keyturn.core.secret_manager import FlowTrigger, RotationFlow
from keyturn.core.secret_manager import VersionStage as Stage
from tests.support import secrets as support
from tests.support.app_sessions import open_app_session
from tests.support.cli import audit_records
from tests.support.cli import keyturn_cli as keyturn
from tests.support.keyturn_server import TENANT, KeyturnServer
from tests.support.logins import can_login
from tests.support.redis_server import RedisServer
from tests.support.secrets import declare_redis_secret, wait_for

pytestmark = pytest.mark.engine

INSTANCE = "crs-oldsessions"
NAME = "orders-old-sessions"
#: Redis reports a client's age in whole seconds: the rotation sits well inside a gap.
GAP = 1.5


def start(
    make_server: Callable[..., KeyturnServer], redis: RedisServer, overlap: str, fields: str
) -> KeyturnServer:
    env = {"KT_SECRET_ADMIN_URL": redis.admin_url(), "KEYTURN_SECRET_TICK": "0.2"}
    server = make_server(extra_env=env)
    declare_redis_secret(
        server, instance=INSTANCE, name=NAME, rotation="2d", overlap=overlap, fields=fields
    )
    server.start()
    wait_for(lambda: bool(support.succeeded(server, NAME)), 15, "the first version")
    time.sleep(GAP)  # the application sessions open well after the first version
    return server


def rotate_now(server: KeyturnServer) -> RotationFlow:
    done = keyturn(server.data_dir, "secrets", "rotate-now", TENANT, NAME)
    assert done.returncode == 0, done.stderr

    def rotations() -> list[RotationFlow]:
        # ``rotate-now`` makes the secret due: a scheduler tick rotates it.
        return [f for f in support.succeeded(server, NAME) if f.trigger is FlowTrigger.MANUAL]

    wait_for(lambda: bool(rotations()), 15, "the rotation asked for")
    return rotations()[0]


def flow(server: KeyturnServer, flow_id: str) -> RotationFlow:
    [found] = [f for f in support.flows(server, NAME) if f.flow_id == flow_id]
    return found


def test_when_unused_drops_the_old_password_once_its_last_session_closes(
    make_server: Callable[..., KeyturnServer], redis_server: RedisServer
) -> None:
    server = start(make_server, redis_server, "1h", 'drop_old = "when-unused"\n')
    port = redis_server.port
    old = support.staged(server, NAME, Stage.CURRENT).password.reveal()
    before = open_app_session(EngineKind.REDIS, port, "app", old, "billing-app")
    after = None
    try:
        time.sleep(GAP)
        rotated = rotate_now(server)
        assert rotated.drop_old_at is not None
        new = support.staged(server, NAME, Stage.CURRENT).password.reveal()
        time.sleep(GAP)
        after = open_app_session(EngineKind.REDIS, port, "app", new, "fresh-app")
        # Several ticks with the old session open: nothing dropped (the new one is no reason).
        time.sleep(2.0)
        assert flow(server, rotated.flow_id).drop_old_at is not None
        assert can_login(port, old, user="app") and can_login(port, new, user="app")
        assert before.alive()
        before.close()
        wait_for(lambda: flow(server, rotated.flow_id).drop_old_at is None, 10, "the early drop")
        wait_for(lambda: not can_login(port, old, user="app"), 10, "the old password gone")
        assert can_login(port, new, user="app")
        assert after.alive(), "a session of the new password is never ended"
    finally:
        before.close()
        if after is not None:
            after.close()
    # (The first version's flow has a drop of its own: nothing older was held.)
    drops = audit_records(server, "search", "--action", "drop_old_password", "--json")
    assert rotated.flow_id in [r["request_id"] for r in drops]
    assert old not in server.log() and new not in server.log()


def test_end_old_sessions_ends_them_at_the_grace_end_with_the_count_audited(
    make_server: Callable[..., KeyturnServer], redis_server: RedisServer
) -> None:
    server = start(make_server, redis_server, "4s", "end_old_sessions = true\n")
    port = redis_server.port
    old = support.staged(server, NAME, Stage.CURRENT).password.reveal()
    first = open_app_session(EngineKind.REDIS, port, "app", old, "billing-app")
    second = open_app_session(EngineKind.REDIS, port, "app", old, "report-app")
    after = None
    try:
        time.sleep(GAP)
        rotated = rotate_now(server)
        new = support.staged(server, NAME, Stage.CURRENT).password.reveal()
        time.sleep(GAP)
        after = open_app_session(EngineKind.REDIS, port, "app", new, "fresh-app")
        assert first.alive() and second.alive(), "at-grace-end: nothing before the end"
        wait_for(lambda: flow(server, rotated.flow_id).drop_old_at is None, 15, "the grace end")
        wait_for(lambda: not can_login(port, old, user="app"), 10, "the old password gone")
        assert not first.alive() and not second.alive()
        assert after.alive() and can_login(port, new, user="app")
    finally:
        first.close()
        second.close()
        if after is not None:
            after.close()
    ended = audit_records(server, "search", "--action", "end_sessions", "--json")
    assert [r["resource"].rsplit("/", 1)[-1] for r in ended] == ["2"], ended
    assert all(r["outcome"] == "succeeded" for r in ended)
