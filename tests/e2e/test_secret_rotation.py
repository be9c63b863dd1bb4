"""Scheduled secret rotation end to end: ``keyturn serve`` with an inventory ``[[secrets]]`` on
a real Redis rotates the secret's account on a short schedule (the account is created when
missing), each current version logs in and the replaced one does not, and the CLI lists,
shows, pauses, resumes, rotates now and prints the history (never a password)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import timedelta

import pytest

from keyturn.core.secret_manager import FlowTrigger
from keyturn.core.secret_manager import VersionStage as Stage
from tests.support import secrets as support
from tests.support.cli import keyturn_cli as keyturn
from tests.support.keyturn_server import TENANT, KeyturnServer
from tests.support.logins import can_login
from tests.support.redis_server import RedisServer
from tests.support.secrets import wait_for

pytestmark = pytest.mark.engine

INSTANCE = "crs-secrete2e"
NAME = "orders-redis"
PERIOD = 3  # seconds


def test_a_secret_rotates_on_its_schedule_and_the_cli_shows_it(
    make_server: Callable[..., KeyturnServer], redis_server: RedisServer
) -> None:
    server = support.start_redis_secret(
        make_server, redis_server.admin_url(), instance=INSTANCE, name=NAME, rotation=f"{PERIOD}s"
    )
    # The first version (the account is created), then two scheduled rotations.
    wait_for(lambda: len(support.succeeded(server, NAME)) >= 3, 6 * PERIOD + 10, "three rotations")
    done = sorted(support.succeeded(server, NAME), key=lambda f: f.created_at)
    assert done[0].trigger is FlowTrigger.CREATE
    scheduled = [f for f in done if f.trigger is FlowTrigger.SCHEDULE]
    assert len(scheduled) >= 2
    # Once per period: consecutive scheduled rotations are a period apart, not closer.
    gaps = [b.created_at - a.created_at for a, b in itertools.pairwise(scheduled)]
    assert all(gap >= timedelta(seconds=PERIOD * 0.9) for gap in gaps), gaps
    current = support.staged(server, NAME, Stage.CURRENT)
    previous = support.staged(server, NAME, Stage.PREVIOUS)
    assert current.account == previous.account == "app"
    assert can_login(redis_server.port, current.password.reveal(), user="app")
    # Replace mode: the replaced password no longer logs in.
    assert not can_login(redis_server.port, previous.password.reveal(), user="app")

    paused = keyturn(server.data_dir, "secrets", "pause", TENANT, NAME)
    assert paused.returncode == 0, paused.stderr
    count = len(support.flows(server, NAME))
    time.sleep(PERIOD + 1.5)
    assert len(support.flows(server, NAME)) <= count + 1  # at most one that had already started
    listed = keyturn(server.data_dir, "secrets", "list")
    assert listed.returncode == 0, listed.stderr
    assert NAME in listed.stdout and "paused" in listed.stdout
    before = len(support.succeeded(server, NAME))
    now = keyturn(server.data_dir, "secrets", "rotate-now", TENANT, NAME)
    assert now.returncode == 0, now.stderr
    wait_for(lambda: len(support.succeeded(server, NAME)) > before, 10, "the rotation asked for")
    # The flow rotate-now asked for is labelled manual (not schedule) in the history.
    assert support.succeeded(server, NAME)[0].trigger is FlowTrigger.MANUAL
    # Checked while the schedule is paused: once resumed, a slot may be rotating (the engine
    # already has the next password, the secret not yet: replace mode's window).
    current = support.staged(server, NAME, Stage.CURRENT)
    assert can_login(redis_server.port, current.password.reveal(), user="app")
    resumed = keyturn(server.data_dir, "secrets", "resume", TENANT, NAME)
    assert resumed.returncode == 0, resumed.stderr
    shown = keyturn(server.data_dir, "secrets", "show", TENANT, NAME)
    history = keyturn(server.data_dir, "secrets", "history", TENANT, NAME)
    assert shown.returncode == 0 and history.returncode == 0, shown.stderr + history.stderr
    assert "ACSCurrent" in shown.stdout and "tencent-ssm" in shown.stdout
    assert history.stdout.count("succeeded") >= 4, history.stdout
    assert "create" in history.stdout and "schedule" in history.stdout
    assert "manual" in history.stdout
    missing = keyturn(server.data_dir, "secrets", "show", TENANT, "no-such-secret")
    assert missing.returncode == 2 and "SecretNotFound" not in missing.stdout
    everything = shown.stdout + history.stdout + listed.stdout + server.log()
    for version in support.versions(server, NAME):
        assert version.password.reveal() not in everything
