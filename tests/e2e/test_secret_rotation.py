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

from keyturn.core.secret_manager import FlowTrigger, RotationFlow, SecretVersion
from keyturn.core.secret_manager import VersionStage as Stage
from tests.support import secrets as support
from tests.support.cli import keyturn_cli as keyturn
from tests.support.keyturn_server import TENANT, KeyturnServer
from tests.support.logins import can_login
from tests.support.redis_server import RedisServer
from tests.support.secrets import declare_redis_secret, wait_for

pytestmark = pytest.mark.engine

INSTANCE = "crs-secrete2e"
NAME = "orders-redis"
PERIOD = 3  # seconds


def start(make_server: Callable[..., KeyturnServer], redis_server: RedisServer) -> KeyturnServer:
    env = {"KT_SECRET_ADMIN_URL": redis_server.admin_url(), "KEYTURN_SECRET_TICK": "0.2"}
    server = make_server(extra_env=env)
    declare_redis_secret(server, instance=INSTANCE, name=NAME, rotation=f"{PERIOD}s")
    server.start()
    return server


def flows(server: KeyturnServer) -> list[RotationFlow]:
    return support.flows(server, NAME)


def succeeded(server: KeyturnServer) -> list[RotationFlow]:
    return support.succeeded(server, NAME)


def versions(server: KeyturnServer) -> list[SecretVersion]:
    return support.versions(server, NAME)


def staged(server: KeyturnServer, stage: Stage) -> SecretVersion:
    return support.staged(server, NAME, stage)


def test_a_secret_rotates_on_its_schedule_and_the_cli_shows_it(
    make_server: Callable[..., KeyturnServer], redis_server: RedisServer
) -> None:
    server = start(make_server, redis_server)
    # The first version (the account is created), then two scheduled rotations.
    wait_for(lambda: len(succeeded(server)) >= 3, 6 * PERIOD + 10, "three rotations")
    done = sorted(succeeded(server), key=lambda f: f.created_at)
    assert done[0].trigger is FlowTrigger.CREATE
    scheduled = [f for f in done if f.trigger is FlowTrigger.SCHEDULE]
    assert len(scheduled) >= 2
    # Once per period: consecutive scheduled rotations are a period apart, not closer.
    gaps = [b.created_at - a.created_at for a, b in itertools.pairwise(scheduled)]
    assert all(gap >= timedelta(seconds=PERIOD * 0.9) for gap in gaps), gaps
    current = staged(server, Stage.CURRENT)
    previous = staged(server, Stage.PREVIOUS)
    assert current.account == previous.account == "app"
    assert can_login(redis_server.port, current.password.reveal(), user="app")
    # Replace mode: the replaced password no longer logs in.
    assert not can_login(redis_server.port, previous.password.reveal(), user="app")

    paused = keyturn(server.data_dir, "secrets", "pause", TENANT, NAME)
    assert paused.returncode == 0, paused.stderr
    count = len(flows(server))
    time.sleep(PERIOD + 1.5)
    assert len(flows(server)) <= count + 1  # at most one that had already started
    listed = keyturn(server.data_dir, "secrets", "list")
    assert listed.returncode == 0, listed.stderr
    assert NAME in listed.stdout and "paused" in listed.stdout
    before = len(succeeded(server))
    now = keyturn(server.data_dir, "secrets", "rotate-now", TENANT, NAME)
    assert now.returncode == 0, now.stderr
    wait_for(lambda: len(succeeded(server)) > before, 10, "the rotation asked for")
    # The flow rotate-now asked for is labelled manual (not schedule) in the history.
    assert succeeded(server)[0].trigger is FlowTrigger.MANUAL
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
    current = staged(server, Stage.CURRENT)
    assert can_login(redis_server.port, current.password.reveal(), user="app")
    everything = shown.stdout + history.stdout + listed.stdout + server.log()
    for version in versions(server):
        assert version.password.reveal() not in everything
