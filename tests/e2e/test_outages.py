"""Node outages in the middle of a reset on a replicated Redis instance (primary + 2 replicas).

A replica that goes down after the task started and comes back before the task's deadline is
waited for: the task retries with backoff and succeeds. A replica that stays down past the
deadline makes the task fail and roll back; the rollback waits for the replica to come back
(it may hold the new password), so when the task says "failed" the old password works on every
node. A fault-injection pause holds the worker after its write-ahead record,
so the outage lands inside the task.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.keyturn_server import KeyturnServer
from tests.support.logins import can_login
from tests.support.passwords import new_instance_id, new_password
from tests.support.redis_replication import force_reconnect, replicated
from tests.support.redis_server import RedisServer
from tests.support.sdk import redis_sdk, reset, wait_task
from tests.support.waiting import wait_for

pytestmark = pytest.mark.engine

FAST = {"KEYTURN_ENGINE_TIMEOUT": "1", "KEYTURN_FAULT_PAUSE": "after_write_ahead=0.5"}


def reset_with_a_replica_down(
    make_server: Callable[..., KeyturnServer],
    replicated_redis: list[RedisServer],
    password: str,
    deadline: int,
    back_after: float,
) -> tuple[KeyturnServer, Any]:
    """A keyturn whose tasks end within ``deadline`` seconds resets the instance to
    ``password``; its last replica stops once the task started and is back ``back_after``
    seconds later. The server and the task's final info."""
    server = make_server(extra_env={**FAST, "KEYTURN_TASK_DEADLINE": str(deadline)})
    server.start()
    instance_id = new_instance_id()
    server.add_instance(instance_id, [s.admin_url() for s in replicated_redis])
    client = redis_sdk(server.endpoint)
    task_id = reset(client, instance_id, Password=password)
    # The outage lands inside the task: once its write-ahead is on disk (the pause follows),
    # not merely once it is queued (a busy machine may still be snapshotting the replica).
    wait_for(lambda: "at after_write_ahead" in server.log(), timeout=10.0)
    replicated_redis[2].stop()
    restarter = threading.Timer(back_after, replicated_redis[2].start)
    restarter.start()
    try:
        info = wait_task(client, task_id, timeout=30)
    finally:
        restarter.join()
    return server, info


def test_a_replica_back_before_the_deadline_is_waited_for(make_server, replicated_redis) -> None:
    new = new_password()
    server, info = reset_with_a_replica_down(make_server, replicated_redis, new, 15, 2.0)
    assert info.Status == "succeed", info.TaskMessage
    replicated_redis[2].password = new
    force_reconnect(replicated_redis, new)
    for node in replicated_redis:
        assert can_login(node.port, new)
    assert replicated(replicated_redis, new, "after-outage")
    assert "retrying" in server.log()


def test_a_replica_down_past_the_deadline_rolls_back(make_server, replicated_redis) -> None:
    old, new = replicated_redis[0].password or "", new_password()
    _, info = reset_with_a_replica_down(make_server, replicated_redis, new, 2, 4.0)
    assert info.Status == "failed"
    assert "rolled back" in info.TaskMessage and str(replicated_redis[2].port) in info.TaskMessage
    replicated_redis[2].wait_link_up()
    for node in replicated_redis:
        assert can_login(node.port, old)
        assert not can_login(node.port, new)
    assert replicated(replicated_redis, old, "after-rollback")
