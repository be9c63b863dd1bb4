"""Three keyturn nodes on one PostgreSQL store: a node lost mid-task loses nothing.

Every test runs a ``KeyturnCluster`` (three ``keyturn serve`` processes, one throwaway
PostgreSQL database, one master key, a TCP proxy in front of the store for each node) in front
of a Redis primary and two replicas, through the official SDKs sent to different nodes.

- The node running a task is SIGKILLed at each worker step (``KEYTURN_FAULT_PAUSE``: before the
  write-ahead, after it, after the apply, during the verification): another node ends the task
  within the lease + 2 s of the kill, as DescribeTaskInfo on a surviving node sees it, and the
  password the task reports logs in on every Redis node and the other one on none.
- A node cut off PostgreSQL (its proxy cut) stops acting within the trust window, another node
  takes its task over once the lease lapses, and once healed the node is ready again and
  serves resets.
- A synchronous call (Alibaba ``ResetAccountPassword``) whose node is cut off mid-task answers
  success once the node is back, with the outcome the node that took the task over stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.support.alibaba_sdk import KvstoreSdk
from tests.support.keyturn_cluster import KeyturnCluster
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

LEASE = 4.0
#: How long a step of the cluster (three nodes on one PostgreSQL) may take to show.
WAIT = 30.0
POINTS = ("before_write_ahead", "after_write_ahead", "after_apply", "during_verify")


def pausing(point: str, seconds: float) -> dict[int, dict[str, str]]:
    """Node 0 pauses ``seconds`` at ``point``; the others never pause."""
    return {0: {"KEYTURN_FAULT_PAUSE": f"{point}={seconds:g}"}}


def paused_at(cluster: KeyturnCluster, point: str) -> bool:
    return f"at {point}" in cluster.nodes[0].log()


@pytest.mark.parametrize("point", POINTS)
def test_the_node_running_a_task_killed_at_each_step(
    make_cluster: Callable[..., KeyturnCluster],
    replicated_redis: list[RedisServer],
    point: str,
) -> None:
    cluster = make_cluster(lease=LEASE, node_env=pausing(point, 60))
    a, b, c = cluster.nodes
    instance_id = new_instance_id()
    # keyturn resets the account it logs in with: its pending admin credential is part of
    # every takeover.
    cluster.add_instance(instance_id, [r.url() for r in replicated_redis], allow_admin_reset=True)
    old, new = replicated_redis[0].password or "", new_password()
    task_id = reset(redis_sdk(a.endpoint), instance_id, Password=new)
    wait_for(lambda: paused_at(cluster, point), timeout=WAIT)
    time.sleep(0.2)
    on_c = redis_sdk(c.endpoint)
    # Node A renews its lease while it pauses: nobody took the task.
    assert task_info(on_c, task_id).Status in ("preparing", "running")
    assert cluster.owner(task_id) == cluster.node_id(0)

    a.kill()
    killed = time.monotonic()
    info = wait_task(on_c, task_id, timeout=LEASE + 30)
    took = time.monotonic() - killed
    assert info.Status in ("succeed", "failed"), info.TaskMessage
    assert took < LEASE + 2, f"taken over and ended {took:.1f} s after the kill"
    reported, other = (new, old) if info.Status == "succeed" else (old, new)
    assert_only_reported_logs_in(replicated_redis, reported, other)
    claimers = [n for n in (b, c) if f"claimed task {task_id}" in n.log()]
    assert len(claimers) == 1, "exactly one surviving node claims the task"

    # The cluster still administers the instance, through the node that did not claim it too.
    again = new_password()
    other_node = c if claimers[0] is b else b
    client = redis_sdk(other_node.endpoint)
    assert wait_task(client, reset(client, instance_id, Password=again)).Status == "succeed"
    assert_only_reported_logs_in(replicated_redis, again, reported)
    for node in (b, c):
        node.stop()
        assert leaked(node, USED_PASSWORDS) == []


def test_a_node_cut_off_the_store_stops_and_another_takes_over(
    make_cluster: Callable[..., KeyturnCluster], replicated_redis: list[RedisServer]
) -> None:
    """Node A pauses after the apply while holding the task, and is cut off PostgreSQL: its
    lease lapses, node B or C resumes the task and ends it; A, waking after the takeover,
    stops without acting (the trust window closed long before). Healed, A is ready again and
    its resets go through."""
    cluster = make_cluster(lease=LEASE, node_env=pausing("after_apply", 2 * LEASE))
    a, b, c = cluster.nodes
    instance_id = new_instance_id()
    cluster.add_instance(instance_id, [r.url() for r in replicated_redis], allow_admin_reset=True)
    old, new = replicated_redis[0].password or "", new_password()
    task_id = reset(redis_sdk(a.endpoint), instance_id, Password=new)
    wait_for(lambda: paused_at(cluster, "after_apply"), timeout=WAIT)
    cluster.partition(0)
    cut = time.monotonic()
    wait_for(lambda: a.readyz(timeout=10).status_code == 503, timeout=WAIT)

    info = wait_task(redis_sdk(b.endpoint), task_id, timeout=LEASE + 30)
    took = time.monotonic() - cut
    assert info.Status in ("succeed", "failed"), info.TaskMessage
    # Not before the lease lapsed (nobody took over a node that may still act), and soon after.
    assert LEASE - 1 < took < LEASE + 2 + 2, took
    reported, other = (new, old) if info.Status == "succeed" else (old, new)
    assert_only_reported_logs_in(replicated_redis, reported, other)
    assert sum(f"claimed task {task_id}" in n.log() for n in (b, c)) == 1

    # A wakes from its pause still cut off: it stops the run, touching nothing.
    wait_for(lambda: "task run stopped" in a.log(), timeout=4 * LEASE)
    assert_only_reported_logs_in(replicated_redis, reported, other)
    cluster.heal(0)
    cluster.wait_ready(a)
    client = redis_sdk(a.endpoint)
    again = new_password()
    assert wait_task(client, reset(client, instance_id, Password=again)).Status == "succeed"
    assert_only_reported_logs_in(replicated_redis, again, reported)
    assert task_info(redis_sdk(c.endpoint), task_id).Status == info.Status


def test_a_sync_call_answers_when_its_task_is_taken_over(
    make_cluster: Callable[..., KeyturnCluster], redis_server: RedisServer
) -> None:
    """An Alibaba ResetAccountPassword accepted by node A, which is cut off PostgreSQL right
    after writing ahead: B or C takes the task over and finishes it; A, healed, answers the
    waiting call with success, once, from the store."""
    cluster = make_cluster(lease=LEASE, node_env=pausing("after_write_ahead", 2 * LEASE))
    a = cluster.nodes[0]
    instance_id, old = kvstore_with_app_user(cluster.add_instance, redis_server, "appuser")
    new = new_password()
    sdk = KvstoreSdk("tea", a.endpoint)
    sdk._tea._read_timeout = 60_000  # the call waits out the takeover (default 10 s)
    waiting, answers = reset_in_background(sdk, instance_id, "appuser", new)
    wait_for(lambda: paused_at(cluster, "after_write_ahead"), timeout=WAIT)
    cluster.partition(0)
    wait_for(
        lambda: cluster.query("SELECT count(*) FROM tasks WHERE state = 'succeed'")[0][0] == 1,
        timeout=LEASE + 30,
    )
    cluster.heal(0)
    waiting.join(60)
    assert len(answers) == 1 and isinstance(answers[0], dict), answers
    assert can_login(redis_server.port, new, "appuser")
    assert not can_login(redis_server.port, old, "appuser")
    [(task_id,)] = cluster.query("SELECT id FROM tasks")
    assert sum(f"claimed task {task_id}" in n.log() for n in cluster.nodes[1:]) == 1
    assert "task run stopped" in a.log()
