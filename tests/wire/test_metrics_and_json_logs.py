"""Metrics and JSON logs of a real ``keyturn serve``, driven through the official Tencent SDK
on real redis-servers: ``/metrics`` scraped and parsed with the Prometheus client's parser
after resets (calls by code, reset durations, engine operations, refusals, tasks by state),
behind its bearer token, with no secret in it; and every line the server logs (with
``KEYTURN_LOG_FORMAT=json``) a JSON object, those of a reset naming its request, action and
task, none holding a password."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.metrics_core import Metric
from tencentcloud.redis.v20180412 import models

from tests.support.keyturn_server import KEY_SECRET, KeyturnServer
from tests.support.logins import can_login
from tests.support.passwords import USED_PASSWORDS, leaked, new_instance_id, new_password
from tests.support.scrape import parse, scrape_text, value
from tests.support.sdk import code_of, redis_sdk, reset, wait_task
from tests.support.tencent_raw import legacy_signed, tencent_error

pytestmark = pytest.mark.engine

TOKEN = "metrics-token-0123456789abcdef"
RESET = {"vendor": "tencent", "action": "redis:ResetPassword"}
#: Lines of the JSON log every record has.
BASE_FIELDS = {"time", "level", "logger", "message"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyturnServer]:
    keyturn = KeyturnServer(
        tmp_path_factory.mktemp("metrics"),
        extra_env={
            "KEYTURN_METRICS_TOKEN": TOKEN,
            "KEYTURN_LOG_FORMAT": "json",
            # DescribeInstances refused every time: the rate-limit refusal is certain.
            "KEYTURN_RATE_LIMITS": "*=100000,redis:DescribeInstances=0",
        },
    )
    keyturn.start()
    yield keyturn
    if keyturn.process is not None:
        keyturn.stop()


@pytest.fixture
def instance(server: KeyturnServer, redis_server: Any) -> tuple[str, Any]:
    instance_id = new_instance_id()
    server.add_instance(instance_id, [redis_server.admin_url()])
    return instance_id, redis_server


def test_metrics_move_with_resets_and_refusals(
    server: KeyturnServer, instance: tuple[str, Any]
) -> None:
    instance_id, redis = instance
    before = parse(scrape_text(server.endpoint, TOKEN))
    client = redis_sdk(server.endpoint)
    tasks = []
    for _ in range(2):
        password = new_password()
        task_id = reset(client, instance_id, Password=password)
        assert wait_task(client, task_id).Status == "succeed"
        tasks.append(task_id)
    assert can_login(redis.port, password)
    # Refusals: a wrong secret (before authentication), an unknown action, the rate limit, a
    # replayed legacy-signed reset.
    wrong = redis_sdk(server.endpoint, secret="not-the-secret-0123456789")
    assert code_of(lambda: wrong.DescribeTaskList(models.DescribeTaskListRequest()))
    assert code_of(lambda: client.DescribeInstances(models.DescribeInstancesRequest())) == (
        "RequestLimitExceeded"
    )
    replayed = legacy_signed(
        server.endpoint, "ResetPassword", {"InstanceId": instance_id, "Password": new_password()}
    )
    answers = [_post_form(server, replayed) for _ in range(2)]
    assert answers[0] is None and answers[1] is not None

    after = parse(scrape_text(server.endpoint, TOKEN))

    def moved(sample: str, labels: dict[str, str] | None = None) -> float:
        return value(after, sample, labels) - value(before, sample, labels)

    assert moved("keyturn_api_calls_total", {**RESET, "code": "OK"}) >= 3
    assert moved("keyturn_api_calls_total", {"code": "AuthFailure.SignatureFailure"}) >= 1
    assert moved("keyturn_api_calls_total", {"code": "RequestLimitExceeded"}) >= 1
    assert moved("keyturn_api_call_duration_seconds_count", RESET) >= 3
    outcome = {"product": "tencent-redis", "outcome": "succeed"}
    assert moved("keyturn_reset_duration_seconds_count", outcome) >= 2
    assert moved("keyturn_reset_duration_seconds_sum", outcome) > 0
    for op in ("discover", "snapshot", "apply", "check"):
        labels = {"engine": "redis", "op": op}
        assert moved("keyturn_engine_operation_duration_seconds_count", labels) >= 2, op
    assert moved("keyturn_refusals_total", {"vendor": "tencent", "reason": "rate_limit"}) >= 1
    assert moved("keyturn_refusals_total", {"vendor": "tencent", "reason": "replay"}) == 1
    assert moved("keyturn_audit_append_duration_seconds_count") >= 6
    assert moved("keyturn_store_statement_duration_seconds_count", {"statement": "select"}) > 0
    assert moved("keyturn_store_statement_duration_seconds_count", {"statement": "insert"}) > 0
    # Read from the store at a scrape, reused for a couple of seconds: scraped until fresh.
    counted = _scrape_until(server, lambda f: value(f, "keyturn_tasks", {"state": "succeed"}) >= 2)
    assert value(counted, "keyturn_tasks", {"state": "running"}) == 0
    assert "keyturn_leases_held" in after
    assert value(after, "keyturn_leases_held") == 0  # every task ended
    # Bounded labels: the unauthenticated call's action is "unknown", never a client string.
    actions = {
        s.labels["action"] for s in after["keyturn_api_calls"].samples if "action" in s.labels
    }
    assert "unknown" in actions
    assert all(a == "unknown" or a.startswith("redis:") for a in actions), actions


def test_the_scrape_holds_no_secret(server: KeyturnServer, instance: tuple[str, Any]) -> None:
    instance_id, redis = instance
    client = redis_sdk(server.endpoint)
    assert wait_task(client, reset(client, instance_id, Password=new_password())).Status
    text = scrape_text(server.endpoint, TOKEN)
    secrets = [*USED_PASSWORDS, redis.password, KEY_SECRET, TOKEN]
    assert [s for s in secrets if s in text] == []
    assert instance_id not in text  # nothing client-chosen or per-instance either


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token-0123456789abcdef", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"],
)
def test_the_metrics_need_the_token(server: KeyturnServer, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = httpx.get(f"http://{server.endpoint}/metrics", headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert "error" in response.json()
    assert TOKEN not in response.text


def test_every_log_line_is_json_and_a_reset_names_its_request(
    server: KeyturnServer, instance: tuple[str, Any]
) -> None:
    instance_id, _ = instance
    client = redis_sdk(server.endpoint)
    task_id = reset(client, instance_id, Password=new_password())
    assert wait_task(client, task_id).Status == "succeed"
    lines = _json_lines(server.log_path)
    assert all(line.keys() >= BASE_FIELDS for line in lines)
    mine = [line for line in lines if line.get("task_id") == task_id]
    finished = [line for line in mine if line["message"] == "task finished"]
    assert len(finished) == 1, mine
    [done] = finished
    assert done["request_id"] and done["vendor"] == "tencent"
    assert done["action"] == "redis:ResetPassword"
    assert done["tenant"] and done["state"] == "succeed"
    assert done["duration"] >= 0
    # The call itself, logged (DEBUG) when answered: the same request, with its duration.
    answered = [line for line in mine if line["message"].endswith("answered OK")]
    assert answered and answered[0]["request_id"] == done["request_id"]
    assert isinstance(answered[0]["duration"], float)
    assert leaked(server, USED_PASSWORDS) == []
    assert TOKEN not in server.log()


def _scrape_until(
    server: KeyturnServer, done: Callable[[dict[str, Metric]], bool], timeout: float = 30.0
) -> dict[str, Metric]:
    deadline = time.monotonic() + timeout
    while True:
        families = parse(scrape_text(server.endpoint, TOKEN))
        if done(families) or time.monotonic() > deadline:
            return families
        time.sleep(0.2)


def _post_form(server: KeyturnServer, encoded: str) -> str | None:
    headers = {"Host": server.endpoint, "Content-Type": "application/x-www-form-urlencoded"}
    response = httpx.post(
        f"http://{server.endpoint}/", content=encoded, headers=headers, timeout=10
    )
    return tencent_error(response)


def _json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of the server's log, each of which must be one JSON object."""
    found = []
    for number, text in enumerate(path.read_text().splitlines(), 1):
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            pytest.fail(f"log line {number} is not JSON: {text[:200]!r}")
        assert isinstance(line, dict), text[:200]
        found.append(line)
    assert found
    return found
