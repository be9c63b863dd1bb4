"""A scheduled rotation while the engine is down, end to end (``keyturn serve`` with an
inventory ``[[secrets]]`` on a real Redis): each try fails, is audited, and is retried after a
backoff with a new password (never the failed one) until the engine is back; the secret never
points at a password that does not log in."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from keyturn.core.secret_manager import FlowState, FlowTrigger
from keyturn.core.secret_manager import VersionStage as Stage
from tests.support import secrets as support
from tests.support.cli import audit_records
from tests.support.keyturn_server import KeyturnServer
from tests.support.logins import can_login
from tests.support.redis_server import RedisServer
from tests.support.secrets import wait_for

pytestmark = pytest.mark.engine

INSTANCE = "crs-secretdown"
NAME = "orders-redis"
PERIOD = 3  # seconds


def test_an_engine_down_rotation_backs_off_with_new_passwords_until_it_is_back(
    make_server: Callable[..., KeyturnServer], redis_server: RedisServer
) -> None:
    server = support.start_redis_secret(
        make_server, redis_server.admin_url(), instance=INSTANCE, name=NAME, rotation=f"{PERIOD}s"
    )
    wait_for(lambda: len(support.succeeded(server, NAME)) >= 1, 15, "the first version")
    good = support.staged(server, NAME, Stage.CURRENT)
    redis_server.pause()  # the port accepts, nothing answers: probes time out
    try:
        wait_for(
            lambda: (
                len([f for f in support.flows(server, NAME) if f.state is FlowState.FAILED]) >= 2
            ),
            6 * PERIOD + 20,
            "two failed tries",
        )
        # The secret still points at the password that logs in.
        assert support.staged(server, NAME, Stage.CURRENT).version_id == good.version_id
    finally:
        redis_server.resume()
    wait_for(
        lambda: support.staged(server, NAME, Stage.CURRENT).version_id != good.version_id,
        6 * PERIOD + 20,
        "a rotation after the engine came back",
    )
    history = sorted(support.flows(server, NAME), key=lambda f: f.created_at)
    failed = [f for f in history if f.state is FlowState.FAILED]
    assert len(failed) >= 2
    # Every try had its own version (a new password), and the tries count up.
    assert len({f.version_id for f in history}) == len(history)
    assert [f.attempt for f in failed[:2]] == [1, 2]
    assert all(f.error_code for f in failed)
    retry = [f for f in history if f.trigger is FlowTrigger.RETRY]
    assert retry and any(f.state is FlowState.SUCCEEDED for f in retry)
    passwords = {v.password.reveal() for v in support.versions(server, NAME)}
    assert len(passwords) == len(support.versions(server, NAME))
    current = support.staged(server, NAME, Stage.CURRENT)
    assert can_login(redis_server.port, current.password.reveal(), user="app")
    # Every try is audited (started before its task, then its end), with no password.
    records = audit_records(server, "search", "--action", "rotate_secret", "--limit", "1000")
    outcomes = [(r["request_id"], r["outcome"]) for r in records]
    for flow in history:
        assert (flow.flow_id, "started") in outcomes
    assert {o for _, o in outcomes} >= {"started", "failed", "succeeded"}
    assert all(p not in str(records) for p in passwords)
    # Never pointed at a failed try's password: the failed versions were never staged.
    failed_versions = {f.version_id for f in failed}
    assert all(
        not v.stages for v in support.versions(server, NAME) if v.version_id in failed_versions
    )
