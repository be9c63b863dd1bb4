"""Zero-downtime overlap rotation end to end on a real Redis: ``keyturn serve`` with an
inventory ``[[secrets]]`` (``overlap``) rotates the account by adding the new password while the
old one keeps working, and drops the old one once the overlap ends (a durable follow-up task).
An application that keeps reconnecting with whatever password it last fetched never fails a
login across three rotations; an old password stops working only after the overlap."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from keyturn.core.secret_manager import VersionStage as Stage
from tests.support import secrets as support
from tests.support.keyturn_server import KeyturnServer
from tests.support.logins import can_login
from tests.support.redis_server import RedisServer
from tests.support.secrets import declare_redis_secret, wait_for

pytestmark = pytest.mark.engine

INSTANCE = "crs-secretoverlap"
NAME = "orders-overlap"
PERIOD, OVERLAP = 5, 2  # seconds


def test_three_overlap_rotations_without_a_failed_login(
    make_server: Callable[..., KeyturnServer], redis_server: RedisServer
) -> None:
    env = {"KT_SECRET_ADMIN_URL": redis_server.admin_url(), "KEYTURN_SECRET_TICK": "0.2"}
    server = make_server(extra_env=env)
    declare_redis_secret(
        server, instance=INSTANCE, name=NAME, rotation=f"{PERIOD}s", overlap=f"{OVERLAP}s"
    )
    server.start()
    wait_for(lambda: bool(support.succeeded(server, NAME)), 15, "the first version")
    run = support.application_loop(
        server,
        NAME,
        lambda password: can_login(redis_server.port, password, user="app"),
        rotations=3,
        timeout=3 * PERIOD + 15,
    )
    seen = run.seen
    assert run.failures == 0, (run.logins, run.failures)
    assert len(seen) >= 4, "three rotations after the first version"
    # After the overlap the replaced passwords are gone; the current one stays.
    # The follow-up ends once its task has succeeded (no longer pending).
    wait_for(lambda: support.flows(server, NAME)[0].drop_old_at is None, OVERLAP + 10, "the drop")
    now = support.staged(server, NAME, Stage.CURRENT).password.reveal()
    previous = support.staged(server, NAME, Stage.PREVIOUS).password.reveal()
    assert can_login(redis_server.port, now, user="app")
    assert not can_login(redis_server.port, previous, user="app")
    for old in seen - {now}:
        assert not can_login(redis_server.port, old, user="app")
    assert run.overlap_checked
    log = server.log()
    assert all(p not in log for p in seen)
