"""The Prometheus implementation of the metrics port, one registry per runtime.

``PrometheusMetrics`` owns a ``CollectorRegistry`` of its own (never the library's global one:
tests start several runtimes in one process, and each server's ``/metrics`` shows only its
own). Families, all ``keyturn_``:

- ``api_calls_total{vendor,action,code}`` and ``api_call_duration_seconds{vendor,action}``:
  every vendor API call, refused or answered (``code`` ``OK`` for an answer);
- ``refusals_total{vendor,reason}``: calls refused by the rate limit (``rate_limit``) or as a
  replay (``replay``);
- ``reset_duration_seconds{product,outcome}``: tasks from creation to their final state;
- ``tasks{state}``: tasks in each state in the store (every node's), read at scrape time;
- ``engine_operation_duration_seconds{engine,op}`` and
  ``engine_operation_errors_total{engine,op,error}``;
- ``audit_append_duration_seconds``, ``store_statement_duration_seconds{statement}``;
- ``leases_held``: task leases this node holds, read at scrape time;
- the library's ``process_*`` families (CPU, memory, open files).

Recording is on hot paths, so each labelled child is bound once and kept in a dict keyed by its
label values: a call costs a tuple, a dict lookup and the child's own add. The label values
are bounded by the callers (see ``keyturn.core.metrics``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

log = logging.getLogger(__name__)

#: Fast operations: store statements, audit appends, engine round trips, API calls.
FAST_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
#: A reset end to end: verified logins on every node, retries while a node is down.
RESET_BUCKETS: Final = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
#: Seconds a read of the task counts is reused: scrapes from several Prometheus servers, or a
#: dashboard refreshing, cost one store query.
TASK_COUNTS_TTL: Final = 2.0
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST

TaskCounts = Callable[[], Awaitable[Mapping[str, int]]]


class PrometheusMetrics:
    """The ``keyturn.core.metrics.Metrics`` port, recording into ``self.registry``."""

    def __init__(
        self, *, process: bool = True, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._monotonic = monotonic
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self._calls = Counter(
            "keyturn_api_calls",
            "Vendor API calls by vendor, action (unknown until routed) and answer code.",
            ["vendor", "action", "code"],
            registry=registry,
        )
        self._call_seconds = Histogram(
            "keyturn_api_call_duration_seconds",
            "Time to answer a vendor API call.",
            ["vendor", "action"],
            buckets=FAST_BUCKETS,
            registry=registry,
        )
        self._refusals = Counter(
            "keyturn_refusals",
            "Calls refused by the rate limit (rate_limit) or as a replayed request (replay).",
            ["vendor", "reason"],
            registry=registry,
        )
        self._resets = Histogram(
            "keyturn_reset_duration_seconds",
            "Tasks from creation to their final state, by product and outcome.",
            ["product", "outcome"],
            buckets=RESET_BUCKETS,
            registry=registry,
        )
        self._tasks = Gauge(
            "keyturn_tasks",
            "Tasks in the store by state (all nodes').",
            ["state"],
            registry=registry,
        )
        self._engine_seconds = Histogram(
            "keyturn_engine_operation_duration_seconds",
            "Engine operations by engine and operation.",
            ["engine", "op"],
            buckets=FAST_BUCKETS,
            registry=registry,
        )
        self._engine_errors = Counter(
            "keyturn_engine_operation_errors",
            "Failed engine operations by engine, operation and error class.",
            ["engine", "op", "error"],
            registry=registry,
        )
        self._audit = Histogram(
            "keyturn_audit_append_duration_seconds",
            "Time to append one record to the audit log.",
            buckets=FAST_BUCKETS,
            registry=registry,
        )
        self._store = Histogram(
            "keyturn_store_statement_duration_seconds",
            "Store SQL statements by kind (select, insert, update, ...).",
            ["statement"],
            buckets=FAST_BUCKETS,
            registry=registry,
        )
        self._leases = Gauge(
            "keyturn_leases_held", "Task leases this node holds.", registry=registry
        )
        if process:
            ProcessCollector(registry=registry)
        # Bound children by label values (see the module docstring).
        self._call_children: dict[tuple[str, str, str], Counter] = {}
        self._call_seconds_children: dict[tuple[str, str], Histogram] = {}
        self._refusal_children: dict[tuple[str, str], Counter] = {}
        self._reset_children: dict[tuple[str, str], Histogram] = {}
        self._engine_children: dict[tuple[str, str], Histogram] = {}
        self._engine_error_children: dict[tuple[str, str, str], Counter] = {}
        self._store_children: dict[str, Histogram] = {}
        self._task_counts: TaskCounts | None = None
        self._counted_at = float("-inf")
        self._counting = asyncio.Lock()

    # ------------------------------------------------------------------ the port

    def api_call(self, vendor: str, action: str, code: str, seconds: float) -> None:
        key = (vendor, action, code)
        child = self._call_children.get(key)
        if child is None:
            child = self._call_children[key] = self._calls.labels(vendor, action, code)
        child.inc()
        timed = self._call_seconds_children.get(key[:2])
        if timed is None:
            timed = self._call_seconds_children[key[:2]] = self._call_seconds.labels(vendor, action)
        timed.observe(seconds)

    def refused(self, vendor: str, reason: str) -> None:
        key = (vendor, reason)
        child = self._refusal_children.get(key)
        if child is None:
            child = self._refusal_children[key] = self._refusals.labels(vendor, reason)
        child.inc()

    def task_finished(self, product: str, outcome: str, seconds: float) -> None:
        key = (product, outcome)
        child = self._reset_children.get(key)
        if child is None:
            child = self._reset_children[key] = self._resets.labels(product, outcome)
        child.observe(seconds)

    def engine_op(self, engine: str, op: str, seconds: float, error: str | None) -> None:
        key = (engine, op)
        child = self._engine_children.get(key)
        if child is None:
            child = self._engine_children[key] = self._engine_seconds.labels(engine, op)
        child.observe(seconds)
        if error is not None:
            failed = self._engine_error_children.get((engine, op, error))
            if failed is None:
                failed = self._engine_errors.labels(engine, op, error)
                self._engine_error_children[(engine, op, error)] = failed
            failed.inc()

    def audit_append(self, seconds: float) -> None:
        self._audit.observe(seconds)

    def store_statement(self, statement: str, seconds: float) -> None:
        child = self._store_children.get(statement)
        if child is None:
            child = self._store_children[statement] = self._store.labels(statement)
        child.observe(seconds)

    # ------------------------------------------------------------------ read at scrape

    def count_leases(self, held: Callable[[], int]) -> None:
        """``keyturn_leases_held`` is ``held()`` at each scrape."""
        self._leases.set_function(lambda: float(held()))

    def count_tasks(self, counts: TaskCounts) -> None:
        """``keyturn_tasks`` is read with ``counts()`` at a scrape, at most every
        ``TASK_COUNTS_TTL`` seconds."""
        self._task_counts = counts

    async def refresh(self) -> None:
        """Read what is read from the store before a scrape; a store that does not answer
        leaves the last counts (and says so in the log)."""
        if self._task_counts is None:
            return
        async with self._counting:
            if self._monotonic() - self._counted_at < TASK_COUNTS_TTL:
                return
            try:
                counts = await self._task_counts()
            except Exception as exc:
                log.warning("metrics: could not read the task counts (%s)", type(exc).__name__)
                return
            for state, count in counts.items():
                self._tasks.labels(state).set(count)
            self._counted_at = self._monotonic()

    async def render(self) -> bytes:
        """The text exposition of every family, fresh."""
        await self.refresh()
        return generate_latest(self.registry)
