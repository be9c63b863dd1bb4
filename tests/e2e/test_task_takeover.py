"""A node killed mid-task: another node on the same store takes the task over once its lease
lapses and finishes or rolls it back, under crash recovery's invariants.

Two ``keyturn serve`` processes share one data dir (one SQLite store in WAL mode, the cluster
of issue 13 on its embedded store). Node A pauses at a worker step (``KEYTURN_FAULT_PAUSE``) and
is SIGKILLed there; node B, which never saw the request, must claim the task within the lease
plus 2 s and end it so that the password the task reports logs in on every node of a
replicated Redis and the other one on none. The instance resets the account keyturn logs in
with, so keyturn's own pending admin credential is part of every takeover.

A synchronous call (Alibaba ``ResetAccountPassword``) waiting on a node that loses its task to
another node answers with the outcome the other node stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from keyturn.store.schema import tasks
from keyturn.store.sql import SqlStore
from tests.support.alibaba_sdk import KvstoreSdk
from tests.support.cli import keyturn_cli
from tests.support.keyturn_server import TENANT, KeyturnServer
from tests.support.logins import can_login
from tests.support.passwords import USED_PASSWORDS, leaked, new_instance_id, new_password
from tests.support.redis_server import RedisServer
from tests.support.sdk import redis_sdk, reset, task_info, wait_task
from tests.support.takeover import (
    assert_only_reported_logs_in,
    kvstore_with_app_user,
    reset_in_background,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.engine

#: A short lease keeps the test quick; the bound is the issue's: lease + 2 s.
LEASE = 4.0


def two_nodes(
    make_server: Callable[..., KeyturnServer], point: str, pause: float = 60, **env: str
) -> list[KeyturnServer]:
    """Node A (pausing ``pause`` seconds at ``point``) and node B on A's data dir."""
    lease = {"KEYTURN_TASK_LEASE": f"{LEASE:g}"}
    a = make_server(extra_env={**lease, **env, "KEYTURN_FAULT_PAUSE": f"{point}={pause:g}"})
    a.start()
    b = make_server(extra_env=lease, data_dir=a.data_dir)
    b.start()
    return [a, b]


@pytest.mark.parametrize("point", ["before_write_ahead", "after_write_ahead", "after_apply"])
def test_a_killed_node_s_task_is_taken_over_within_the_lease(
    make_server: Callable[..., KeyturnServer], replicated_redis: list[RedisServer], point: str
) -> None:
    a, b = two_nodes(make_server, point)
    instance_id = new_instance_id()
    a.add_instance(instance_id, [r.url() for r in replicated_redis], allow_admin_reset=True)
    old, new = replicated_redis[0].password, new_password()
    task_id = reset(redis_sdk(a.endpoint), instance_id, Password=new)
    on_b = redis_sdk(b.endpoint)
    if point == "after_apply":
        wait_for(lambda: all(can_login(r.port, new) for r in replicated_redis))
    else:
        wanted = "preparing" if point == "before_write_ahead" else "running"
        wait_task(on_b, task_id, until=(wanted,))
        time.sleep(0.2)
    # B holds nothing yet: A renews its lease while it pauses.
    assert task_info(on_b, task_id).Status in ("preparing", "running")
    a.kill()
    killed = time.monotonic()

    info = wait_task(on_b, task_id, timeout=LEASE + 20)
    took = time.monotonic() - killed
    assert info.Status in ("succeed", "failed"), info.TaskMessage
    assert took < LEASE + 2, f"taken over and ended {took:.1f} s after the kill"
    reported, other = (new, old) if info.Status == "succeed" else (old, new)
    assert_only_reported_logs_in(replicated_redis, reported, other)
    assert f"claimed task {task_id}" in b.log()

    # B holds a working admin credential: the next reset through B goes through.
    again = new_password()
    assert wait_task(on_b, reset(on_b, instance_id, Password=again)).Status == "succeed"
    assert all(can_login(r.port, again) for r in replicated_redis)
    b.stop()
    assert leaked(b, [*USED_PASSWORDS, *(r.password or "" for r in replicated_redis)]) == []


def test_a_stopped_node_hands_its_parked_task_over_at_once(
    make_server: Callable[..., KeyturnServer], redis_server: RedisServer
) -> None:
    """SIGTERM parks the task and releases its lease: B resumes it without waiting for the
    lease to lapse."""
    a, b = two_nodes(make_server, "after_apply", KEYTURN_SHUTDOWN_GRACE="0.5")
    instance_id = new_instance_id()
    a.add_instance(instance_id, [redis_server.url()], allow_admin_reset=True)
    new = new_password()
    task_id = reset(redis_sdk(a.endpoint), instance_id, Password=new)
    wait_for(lambda: can_login(redis_server.port, new))
    listed = keyturn_cli(a.data_dir, "nodes")
    assert listed.returncode == 0, listed.stderr
    node_a, node_b = a.env["KEYTURN_NODE_ID"], b.env["KEYTURN_NODE_ID"]
    assert node_a in listed.stdout and node_b in listed.stdout
    [held] = [line for line in listed.stdout.splitlines() if str(task_id) in line]
    assert node_a in held and "s left" in held
    a.stop()
    stopped = time.monotonic()
    info = wait_task(redis_sdk(b.endpoint), task_id, timeout=LEASE + 20)
    assert info.Status == "succeed", info.TaskMessage
    # Released, not lapsed: B's claimer (every second) takes it at once.
    assert time.monotonic() - stopped < LEASE
    assert can_login(redis_server.port, new)
    after = keyturn_cli(a.data_dir, "nodes").stdout
    assert node_a not in after and node_b in after and "no unfinished tasks" in after
    b.stop()


async def running_task(store: SqlStore) -> bool:
    return any(t.state.value == "running" for t in await store.held_tasks())


def steal(store: SqlStore) -> Any:
    """Claim the one running task for a node that died at once (fence incremented, lease
    long lapsed): its node's next renewal fails, and another node's claimer takes it over."""

    async def go() -> Any:
        async with store.engine.begin() as conn:
            running = sa.select(tasks.c.id).where(tasks.c.state == "running")
            task_id = (await conn.execute(running)).scalar_one()
            await conn.execute(
                sa.update(tasks)
                .where(tasks.c.id == task_id)
                .values(
                    owner="ghost",
                    fence=tasks.c.fence + 1,
                    lease_until=datetime(2000, 1, 1, tzinfo=UTC),
                )
            )
        return task_id

    return go()


def test_a_sync_call_answers_when_its_task_ends_on_another_node(
    make_server: Callable[..., KeyturnServer], redis_server: RedisServer
) -> None:
    """Node A accepts an Alibaba ResetAccountPassword and pauses after writing ahead; the
    task is taken from it meanwhile and node B finishes it. A's run stops (its lease is lost)
    and the waiting call answers success from the store, once, with the password B set."""
    a, b = two_nodes(make_server, "after_write_ahead", pause=4)
    instance_id, old = kvstore_with_app_user(a.add_instance, redis_server, "appuser")
    new = new_password()
    waiting, answers = reset_in_background(
        KvstoreSdk("tea", a.endpoint), instance_id, "appuser", new
    )
    wait_for(lambda: a.with_store(running_task))
    task_id = a.with_store(steal)
    waiting.join(30)
    assert len(answers) == 1 and isinstance(answers[0], dict), answers
    assert can_login(redis_server.port, new, "appuser")
    assert not can_login(redis_server.port, old, "appuser")
    assert f"claimed task {task_id}" in b.log()
    assert "task run stopped" in a.log()
    assert a.with_store(lambda s: s.get_task(TENANT, task_id)).state.value == "succeed"
    a.stop()
    b.stop()
