"""The Grafana dashboard under ``deploy/grafana`` reads only series keyturn exports: every
metric its queries name is a sample of ``PrometheusMetrics``' exposition, and every label they
group by is one of that sample's labels; its panels all use the data source variable."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from keyturn.telemetry.prometheus import PrometheusMetrics

DASHBOARD = Path(__file__).parents[3] / "deploy" / "grafana" / "keyturn.json"
METRIC = re.compile(r"\bkeyturn_[a-z_]+")
GROUPING = re.compile(r"\bby \(([^)]*)\)")


async def exported() -> dict[str, set[str]]:
    """Sample name -> its label names, with every family recorded once."""
    recorder = PrometheusMetrics(process=False)
    recorder.api_call("tencent", "redis:ResetPassword", "OK", 0.1)
    recorder.refused("tencent", "replay")
    recorder.task_finished("tencent-redis", "succeed", 1.0)
    recorder.engine_op("redis", "apply", 0.01, "EngineUnavailable")
    recorder.audit_append(0.001)
    recorder.store_statement("select", 0.001)

    async def counts() -> dict[str, int]:
        return {"running": 1}

    recorder.count_tasks(counts)
    recorder.count_leases(lambda: 1)
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families((await recorder.render()).decode()):
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    return found


def queries(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return own + [q for value in node.values() for q in queries(value)]
    if isinstance(node, list):
        return [q for value in node for q in queries(value)]
    return []


async def test_every_query_names_an_exported_series() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    samples = await exported()
    exprs = queries(dashboard["panels"])
    assert len(exprs) >= 15
    named = set()
    for expr in exprs:
        metrics = set(METRIC.findall(expr))
        assert metrics, expr
        named |= metrics
        for metric in metrics:
            assert metric in samples, f"{metric} is not exported ({expr})"
            for group in GROUPING.findall(expr):
                labels = {label.strip() for label in group.split(",")} - {"le", "instance"}
                assert labels <= samples[metric], (metric, labels)
    # The list: calls by code, reset durations, tasks by state, engine latency,
    # refusals, leases held.
    assert {
        "keyturn_api_calls_total",
        "keyturn_reset_duration_seconds_bucket",
        "keyturn_tasks",
        "keyturn_engine_operation_duration_seconds_bucket",
        "keyturn_refusals_total",
        "keyturn_leases_held",
    } <= named


def test_panels_use_the_data_source_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    assert dashboard["uid"] == "keyturn-overview"
