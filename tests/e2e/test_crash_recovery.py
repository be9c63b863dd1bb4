"""kill -9 and SIGTERM in the middle of a reset, then restart: the task ends succeed or failed,
and the engine's password is exactly what the task says. Fault-injection pauses
(KEYTURN_FAULT_PAUSE) hold the worker at a chosen step so the signal lands there. keyturn logs
in as ``default`` and resets it, so its own pending admin credential is part of every crash:
the instances opt in (``allow_admin_reset``)."""

from __future__ import annotations

import signal
import time

import pytest

from tests.support.logins import can_login
from tests.support.passwords import USED_PASSWORDS, leaked, new_instance_id, new_password
from tests.support.sdk import redis_sdk, reset, wait_task

pytestmark = pytest.mark.engine


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        ("before_write_ahead", "succeed"),
        # Written ahead, nothing applied yet: the restart runs the plan again and finishes.
        ("after_write_ahead", "succeed"),
        ("after_apply", "succeed"),
    ],
)
def test_kill_9_mid_reset(make_server, redis_server, point: str, expected: str) -> None:
    server = make_server(extra_env={"KEYTURN_FAULT_PAUSE": f"{point}=60"})
    server.start()
    instance_id = new_instance_id()
    server.add_instance(instance_id, [redis_server.url()], allow_admin_reset=True)
    client = redis_sdk(server.endpoint)
    old, new = redis_server.password, new_password()
    task_id = reset(client, instance_id, Password=new)
    if point == "after_apply":
        wait_for(lambda: can_login(redis_server.port, new))
    else:
        wanted = "preparing" if point == "before_write_ahead" else "running"
        wait_task(client, task_id, until=(wanted,))
        time.sleep(0.2)
    server.kill()

    server.start(extra_env={"KEYTURN_FAULT_PAUSE": ""})
    info = wait_task(client, task_id)
    assert info.Status == expected, info.TaskMessage
    if expected == "succeed":
        assert can_login(redis_server.port, new) and not can_login(redis_server.port, old)
    else:
        assert can_login(redis_server.port, old) and not can_login(redis_server.port, new)
        assert "rolled back" in info.TaskMessage
    # keyturn still holds a working admin credential: the next reset goes through.
    again = new_password()
    assert wait_task(client, reset(client, instance_id, Password=again)).Status == "succeed"
    assert can_login(redis_server.port, again)
    server.stop()
    assert leaked(server, [*USED_PASSWORDS, redis_server.password]) == []


def test_sigterm_parks_and_resumes(make_server, redis_server) -> None:
    server = make_server(
        extra_env={"KEYTURN_FAULT_PAUSE": "after_apply=60", "KEYTURN_SHUTDOWN_GRACE": "0.5"},
    )
    server.start()
    instance_id = new_instance_id()
    server.add_instance(instance_id, [redis_server.url()], allow_admin_reset=True)
    client = redis_sdk(server.endpoint)
    new = new_password()
    task_id = reset(client, instance_id, Password=new)
    wait_for(lambda: can_login(redis_server.port, new))
    assert server.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    assert "parked 1 unfinished task" in server.log()
    server.start(extra_env={"KEYTURN_FAULT_PAUSE": ""})
    assert wait_task(client, task_id).Status == "succeed"
    server.stop()


def test_conflicting_reset_is_refused(make_server, redis_server) -> None:
    server = make_server(extra_env={"KEYTURN_FAULT_PAUSE": "after_apply=2"})
    server.start()
    instance_id = new_instance_id()
    server.add_instance(instance_id, [redis_server.admin_url()])
    client = redis_sdk(server.endpoint)
    first = reset(client, instance_id, Password=new_password())
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
        TencentCloudSDKException,
    )

    with pytest.raises(TencentCloudSDKException) as caught:
        reset(client, instance_id, Password=new_password())
    assert caught.value.get_code() == "ResourceUnavailable.InstanceLockedError"
    assert wait_task(client, first).Status == "succeed"
    server.stop()


def test_inventory_reload_keeps_a_rotated_admin_password(make_server, redis_server) -> None:
    """keyturn logs in as ``default`` and resets ``default``; a restart that reloads an
    inventory file naming the old password must not lock it out."""
    server = make_server(extra_env={"KT_ADMIN_URL": redis_server.url()})
    server.config.write_text(
        server.config.read_text() + '\n[[instances]]\nid = "crs-inv00001"\ntenant = "1300000001"\n'
        'product = "tencent-redis"\nregion = "ap-guangzhou"\nnodes = ["${KT_ADMIN_URL}"]\n'
        "allow_admin_reset = true\n"
    )
    server.start()
    client = redis_sdk(server.endpoint)
    new = new_password()
    assert wait_task(client, reset(client, "crs-inv00001", Password=new)).Status == "succeed"
    server.stop()
    server.start()
    again = new_password()
    assert wait_task(client, reset(client, "crs-inv00001", Password=again)).Status == "succeed"
    assert can_login(redis_server.port, again)
    server.stop()
