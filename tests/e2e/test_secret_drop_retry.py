"""An overlap's drop of the old password while the engine is down, end to end (``keyturn
serve``, an inventory ``[[secrets]]`` in overlap mode on a real Redis): ``keyturn secrets
rotate-now`` adds a new password (a ``manual`` flow), then the drop fails: the engine stops
before the overlap ends (the drop cannot be queued), or it refuses keyturn's change (the
drop's task fails). Either way the drop stays pending (``drop_old_at``) through its failed
tries and is retried; once the engine is back the old password no longer logs in."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from keyturn.core.secret_manager import FlowTrigger
from keyturn.core.secret_manager import VersionStage as Stage
from tests.support import secrets as support
from tests.support.cli import keyturn_cli as keyturn
from tests.support.keyturn_server import TENANT, KeyturnServer
from tests.support.logins import can_login
from tests.support.redis_server import ADMIN_USER, RedisServer
from tests.support.secrets import declare_redis_secret, wait_for

pytestmark = pytest.mark.engine

INSTANCE = "crs-secretdrop"
NAME = "orders-drop"
OVERLAP = 2  # seconds


def test_a_drop_that_fails_while_the_engine_is_down_is_retried_until_done(
    make_server: Callable[..., KeyturnServer], redis_server: RedisServer
) -> None:
    env = {"KT_SECRET_ADMIN_URL": redis_server.admin_url(), "KEYTURN_SECRET_TICK": "0.2"}
    server = make_server(extra_env=env)
    declare_redis_secret(server, instance=INSTANCE, name=NAME, rotation="1h", overlap=f"{OVERLAP}s")
    server.start()
    wait_for(lambda: bool(support.succeeded(server, NAME)), 15, "the first version")
    asked = keyturn(server.data_dir, "secrets", "rotate-now", TENANT, NAME)
    assert asked.returncode == 0, asked.stderr
    wait_for(lambda: len(support.succeeded(server, NAME)) >= 2, 15, "the rotation asked for")
    flow = support.succeeded(server, NAME)[0]
    assert flow.trigger is FlowTrigger.MANUAL and flow.drop_old_at is not None
    old = support.staged(server, NAME, Stage.PREVIOUS).password.reveal()
    new = support.staged(server, NAME, Stage.CURRENT).password.reveal()
    assert can_login(redis_server.port, old, user="app")
    assert can_login(redis_server.port, new, user="app")
    redis_server.pause()  # before the overlap ends: the port accepts, nothing answers
    try:
        time.sleep(OVERLAP + 8)  # the drop came due and its tries failed
        pending = support.flows(server, NAME)[0]
        assert pending.flow_id == flow.flow_id
        assert pending.drop_old_at is not None, "kept pending while the drop cannot be done"
    finally:
        redis_server.resume()
    wait_for(lambda: support.flows(server, NAME)[0].drop_old_at is None, 30, "the retried drop")
    assert not can_login(redis_server.port, old, user="app")
    assert can_login(redis_server.port, new, user="app")
    assert "could not drop the previous password" in server.log() or ("drop failed" in server.log())


def test_a_drop_whose_task_fails_is_retried_until_done(
    make_server: Callable[..., KeyturnServer], redis_server: RedisServer
) -> None:
    """The engine answers probes (the drop is queued) but refuses keyturn's ``ACL SETUSER``
    for a while: the drop's task fails, the drop stays pending and is retried until done."""
    env = {"KT_SECRET_ADMIN_URL": redis_server.admin_url(), "KEYTURN_SECRET_TICK": "0.2"}
    server = make_server(extra_env=env)
    declare_redis_secret(server, instance=INSTANCE, name=NAME, rotation="1h", overlap="3s")
    server.start()
    wait_for(lambda: bool(support.succeeded(server, NAME)), 15, "the first version")
    asked = keyturn(server.data_dir, "secrets", "rotate-now", TENANT, NAME)
    assert asked.returncode == 0, asked.stderr
    wait_for(lambda: len(support.succeeded(server, NAME)) >= 2, 15, "the rotation asked for")
    old = support.staged(server, NAME, Stage.PREVIOUS).password.reveal()
    new = support.staged(server, NAME, Stage.CURRENT).password.reveal()
    redis_server.command("ACL", "SETUSER", ADMIN_USER, "-acl|setuser")
    try:
        wait_for(lambda: "drop failed; it is tried again" in server.log(), 20, "a failed task")
        assert support.flows(server, NAME)[0].drop_old_at is not None
        assert can_login(redis_server.port, old, user="app")  # not dropped yet
    finally:
        redis_server.command("ACL", "SETUSER", ADMIN_USER, "+acl|setuser")
    wait_for(lambda: support.flows(server, NAME)[0].drop_old_at is None, 30, "the retried drop")
    assert not can_login(redis_server.port, old, user="app")
    assert can_login(redis_server.port, new, user="app")
