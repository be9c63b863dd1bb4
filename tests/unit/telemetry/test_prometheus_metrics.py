"""``PrometheusMetrics`` without I/O: what each recorder adds to which family, children bound
once, one registry per runtime, the task counts read at a scrape (cached, a failing read
keeping the last counts), the leases read by a function, and the exposition parsed back with
the client library's parser."""

from __future__ import annotations

import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from keyturn.core.errors import StoreUnavailable
from keyturn.core.metrics import NO_METRICS, Metrics
from keyturn.telemetry import prometheus
from keyturn.telemetry.prometheus import PrometheusMetrics
from tests.support.scrape import parse, value


def metrics() -> PrometheusMetrics:
    return PrometheusMetrics(process=False)


def test_it_implements_the_port() -> None:
    port: Metrics = metrics()
    assert port is not NO_METRICS


async def test_api_calls_by_vendor_action_and_code() -> None:
    recorder = metrics()
    for _ in range(3):
        recorder.api_call("tencent", "redis:ResetPassword", "OK", 0.01)
    recorder.api_call("tencent", "unknown", "AuthFailure.SignatureFailure", 0.001)
    found = parse((await recorder.render()).decode())
    ok = {"vendor": "tencent", "action": "redis:ResetPassword", "code": "OK"}
    assert value(found, "keyturn_api_calls_total", ok) == 3
    assert value(found, "keyturn_api_calls_total", {"action": "unknown"}) == 1
    timed = {"vendor": "tencent", "action": "redis:ResetPassword"}
    assert value(found, "keyturn_api_call_duration_seconds_count", timed) == 3
    assert value(found, "keyturn_api_call_duration_seconds_sum", timed) == pytest.approx(0.03)


def test_one_entry_per_label_set() -> None:
    recorder = metrics()
    for _ in range(3):
        recorder.api_call("alibaba", "kvstore:ResetAccountPassword", "OK", 0.0)
    assert recorder.calls.values == {("alibaba", "kvstore:ResetAccountPassword", "OK"): 3.0}
    assert list(recorder.call_seconds.values) == [("alibaba", "kvstore:ResetAccountPassword")]


async def test_histogram_buckets_are_less_or_equal_and_cumulative() -> None:
    recorder = metrics()
    for seconds in (0.0, 0.0005, 0.0006, 10.0, 11.0):
        recorder.audit_append(seconds)
    found = parse((await recorder.render()).decode())
    name = "keyturn_audit_append_duration_seconds_bucket"
    assert value(found, name, {"le": "0.0005"}) == 2  # a bound holds what equals it
    assert value(found, name, {"le": "0.001"}) == 3
    assert value(found, name, {"le": "10.0"}) == 4
    assert value(found, name, {"le": "+Inf"}) == 5
    assert value(found, "keyturn_audit_append_duration_seconds_count") == 5
    assert value(found, "keyturn_audit_append_duration_seconds_sum") == pytest.approx(21.0011)


async def test_every_other_family() -> None:
    recorder = metrics()
    recorder.refused("tencent", "rate_limit")
    recorder.refused("huawei", "replay")
    recorder.task_finished("tencent-redis", "succeed", 0.4)
    recorder.task_finished("tencent-redis", "failed", 25.0)
    recorder.engine_op("redis", "apply", 0.002, None)
    recorder.engine_op("redis", "apply", 0.003, "EngineUnavailable")
    recorder.audit_append(0.001)
    recorder.store_statement("select", 0.0001)
    found = parse((await recorder.render()).decode())
    assert value(found, "keyturn_refusals_total", {"reason": "rate_limit"}) == 1
    assert value(found, "keyturn_refusals_total", {"vendor": "huawei", "reason": "replay"}) == 1
    succeeded = {"product": "tencent-redis", "outcome": "succeed"}
    assert value(found, "keyturn_reset_duration_seconds_count", succeeded) == 1
    # 25 s falls in the 30 s bucket, not in the 20 s one.
    failed = {"product": "tencent-redis", "outcome": "failed"}
    assert value(found, "keyturn_reset_duration_seconds_bucket", {**failed, "le": "20.0"}) == 0
    assert value(found, "keyturn_reset_duration_seconds_bucket", {**failed, "le": "30.0"}) == 1
    op = {"engine": "redis", "op": "apply"}
    assert value(found, "keyturn_engine_operation_duration_seconds_count", op) == 2
    assert value(found, "keyturn_engine_operation_errors_total", op) == 1
    assert (
        value(found, "keyturn_engine_operation_errors_total", {"error": "EngineUnavailable"}) == 1
    )
    assert value(found, "keyturn_audit_append_duration_seconds_count") == 1
    assert value(found, "keyturn_store_statement_duration_seconds_count", {"statement": "select"})


async def test_each_runtime_has_its_own_registry() -> None:
    one, two = metrics(), metrics()
    one.api_call("tencent", "redis:ResetPassword", "OK", 0.0)
    found = parse((await two.render()).decode())
    assert value(found, "keyturn_api_calls_total") == 0
    # And the library's global registry is untouched.
    from prometheus_client import REGISTRY

    assert REGISTRY.get_sample_value("keyturn_api_calls_total") is None


async def test_task_counts_are_read_at_a_scrape_and_reused() -> None:
    now = [100.0]
    reads = []
    counts = {"preparing": 0, "running": 1, "succeed": 5, "failed": 2}

    async def read() -> dict[str, int]:
        reads.append(1)
        return dict(counts)

    recorder = PrometheusMetrics(process=False, monotonic=lambda: now[0])
    recorder.count_tasks(read)
    found = parse((await recorder.render()).decode())
    assert value(found, "keyturn_tasks", {"state": "succeed"}) == 5
    counts["succeed"] = 6
    await recorder.render()
    assert len(reads) == 1  # within the TTL: no second read
    now[0] += prometheus.TASK_COUNTS_TTL
    found = parse((await recorder.render()).decode())
    assert len(reads) == 2 and value(found, "keyturn_tasks", {"state": "succeed"}) == 6


async def test_a_failing_count_keeps_the_last_one(caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    async def read() -> dict[str, int]:
        calls.append(1)
        if len(calls) > 1:
            raise StoreUnavailable()
        return {"running": 3}

    recorder = metrics()
    recorder.count_tasks(read)
    await recorder.render()
    recorder._counted_at = float("-inf")  # as if the TTL had passed
    with caplog.at_level(logging.WARNING):
        found = parse((await recorder.render()).decode())
    assert value(found, "keyturn_tasks", {"state": "running"}) == 3
    assert "StoreUnavailable" in caplog.text


async def test_leases_held_is_read_at_a_scrape() -> None:
    held = [1, 2]
    recorder = metrics()
    recorder.count_leases(lambda: len(held))
    assert value(parse((await recorder.render()).decode()), "keyturn_leases_held") == 2
    held.pop()
    assert value(parse((await recorder.render()).decode()), "keyturn_leases_held") == 1


async def test_the_exposition_parses_and_names_every_family() -> None:
    recorder = PrometheusMetrics()
    text = (await recorder.render()).decode()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {
        "keyturn_api_calls",
        "keyturn_api_call_duration_seconds",
        "keyturn_refusals",
        "keyturn_reset_duration_seconds",
        "keyturn_tasks",
        "keyturn_engine_operation_duration_seconds",
        "keyturn_engine_operation_errors",
        "keyturn_audit_append_duration_seconds",
        "keyturn_store_statement_duration_seconds",
        "keyturn_leases_held",
        "process_resident_memory_bytes",
    } <= names
