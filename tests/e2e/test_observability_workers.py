"""Observability under ``keyturn serve --workers 2``: with ``KEYTURN_LOG_FORMAT=json`` the
supervisor and both workers write only JSON lines (the workers' naming their process), a reset
through the official Tencent SDK is logged with its request, action and task, and every worker
serves ``/metrics`` behind the token, each showing the server's totals (``SiblingCounts``)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.metrics_core import Metric
from tencentcloud.redis.v20180412 import models

from tests.support.keyturn_server import KeyturnServer
from tests.support.passwords import USED_PASSWORDS, leaked, new_instance_id, new_password
from tests.support.scrape import parse, value
from tests.support.sdk import redis_sdk, reset, wait_task

pytestmark = pytest.mark.engine

TOKEN = "workers-metrics-token-0123456789"
READS = 6
RESET_OK = {"action": "redis:ResetPassword", "code": "OK"}
READ_OK = {"action": "redis:DescribeInstances", "code": "OK"}


async def scrape_both_workers(endpoint: str) -> list[tuple[str, dict[str, Metric]]]:
    """Scrapes over fresh connections, a burst at a time, until both workers answered one:
    each answering worker's pid and what it showed."""
    found: list[tuple[str, dict[str, Metric]]] = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for _ in range(20):
        async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) as http:
            answers = await asyncio.gather(
                *(http.get(f"http://{endpoint}/metrics", headers=headers) for _ in range(8))
            )
        assert all(answer.status_code == 200 for answer in answers)
        found += [(answer.headers["x-keyturn-pid"], parse(answer.text)) for answer in answers]
        if len({pid for pid, _ in found}) >= 2:
            break
    return found


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
    for _ in range(READS):  # a client each: a connection each, spread over the workers
        redis_sdk(server.endpoint).DescribeInstances(models.DescribeInstancesRequest())
    time.sleep(1.5)  # each worker publishes its counts every second
    # Whichever worker answers a scrape, it shows the server's totals.
    scrapes = asyncio.run(scrape_both_workers(server.endpoint))
    assert len({pid for pid, _ in scrapes}) == 2, scrapes
    for _, families in scrapes:
        assert value(families, "keyturn_api_calls_total", RESET_OK) == 1
        assert value(families, "keyturn_api_calls_total", READ_OK) == READS
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
