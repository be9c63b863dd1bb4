"""Observability under ``keyturn serve --workers 2``: with ``KEYTURN_LOG_FORMAT=json`` the
supervisor and both workers write only JSON lines (the workers' naming their process), a reset
through the official Tencent SDK is logged with its request, action and task, and every worker
serves ``/metrics`` behind the token (each its own process's counts)."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.keyturn_server import KeyturnServer
from tests.support.passwords import USED_PASSWORDS, leaked, new_instance_id, new_password
from tests.support.scrape import parse, scrape_text
from tests.support.sdk import redis_sdk, reset, wait_task

pytestmark = pytest.mark.engine

TOKEN = "workers-metrics-token-0123456789"


def test_json_logs_and_metrics_with_two_workers(
    make_server: Callable[..., KeyturnServer], redis_server: Any
) -> None:
    server = make_server(
        extra_args=["--workers", "2"],
        extra_env={"KEYTURN_LOG_FORMAT": "json", "KEYTURN_METRICS_TOKEN": TOKEN},
    )
    server.start()
    instance_id = new_instance_id()
    server.add_instance(instance_id, [redis_server.admin_url()])
    client = redis_sdk(server.endpoint)
    task_id = reset(client, instance_id, Password=new_password())
    assert wait_task(client, task_id).Status == "succeed"
    for _ in range(4):  # new connections: both workers may answer
        assert "keyturn_api_calls" in parse(scrape_text(server.endpoint, TOKEN))
        refused = httpx.get(f"http://{server.endpoint}/metrics", timeout=10)
        assert refused.status_code == 401
    assert server.stop(signal.SIGTERM) is not None

    lines = [json.loads(text) for text in server.log().splitlines()]
    assert lines and all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    finished = [
        line
        for line in lines
        if line.get("task_id") == task_id and line["message"] == "task finished"
    ]
    assert len(finished) == 1
    [done] = finished
    assert done["action"] == "redis:ResetPassword" and done["request_id"]
    assert isinstance(done["pid"], int)
    assert leaked(server, USED_PASSWORDS) == [] and TOKEN not in server.log()
