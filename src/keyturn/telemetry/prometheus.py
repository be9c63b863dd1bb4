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

Recording is on hot paths (every call, every store statement), so the recorded families are not
the library's ``Counter``/``Histogram`` (a lock and a label check per update, about 1-2 µs):
they are plain accumulators, a dict of label values to a count or to a histogram's bucket
counts, updated with a dict lookup, a ``bisect`` and two additions (about 0.2 µs), and turned
into the library's metric families by a collector when scraped. No lock is needed: everything
that records or scrapes runs on the runtime's event loop thread. The label values are bounded
by the callers (see ``keyturn.core.metrics``). Under ``serve --workers N`` the counters and
histograms are the server's totals, whichever worker answers (``share_with``,
``keyturn.telemetry.sibling_counts``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from keyturn.core.background import stop
from keyturn.telemetry.sibling_counts import Shape, SiblingCounts, Snapshot, Values, added

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
#: Seconds between two snapshots a worker publishes for its siblings (``--workers``).
PUBLISH_EVERY: Final = 1.0

TaskCounts = Callable[[], Awaitable[Mapping[str, int]]]
Labels = tuple[str, ...]
#: A bucket bound as the library writes ``le`` (``0.005``, ``20.0``); it is not annotated.
_bound_text: Callable[[float], str] = floatToGoString


class Counts:
    """A counter family: label values -> count."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = list(labels)
        self.values: dict[Labels, float] = {}
        self.shape = Shape(labels=len(self.labels))

    def inc(self, key: Labels) -> None:
        self.values[key] = self.values.get(key, 0.0) + 1.0

    def family(self, values: Values | None = None) -> Metric:
        """The family of ``values`` (this process's own when None)."""
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, count in (self.values if values is None else values).items():
            assert not isinstance(count, list)  # checked against ``shape`` when read
            family.add_metric(key, count)
        return family


class Histograms:
    """A histogram family: label values -> per-bucket counts (not cumulative), the count over
    the last bound (``+Inf``) and the sum, in one list."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str],
        buckets: Sequence[float],
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = list(labels)
        self._bounds = tuple(float(b) for b in buckets)
        self._les = [_bound_text(b) for b in self._bounds] + ["+Inf"]
        self.values: dict[Labels, list[float]] = {}
        self.shape = Shape(labels=len(self.labels), slots=len(self._bounds) + 2)

    def observe(self, key: Labels, amount: float) -> None:
        slots = self.values.get(key)
        if slots is None:
            slots = self.values[key] = [0.0] * (len(self._bounds) + 2)
        # The first bound >= amount: Prometheus buckets are "less than or equal".
        slots[bisect_left(self._bounds, amount)] += 1.0
        slots[-1] += amount

    def family(self, values: Values | None = None) -> Metric:
        """The family of ``values`` (this process's own when None)."""
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, slots in (self.values if values is None else values).items():
            assert isinstance(slots, list)  # checked against ``shape`` when read
            cumulative, buckets = 0.0, []
            for le, count in zip(self._les, slots, strict=False):
                cumulative += count
                buckets.append((le, cumulative))
            family.add_metric(key, buckets, sum_value=slots[-1])
        return family


class _Families(Collector):
    """Hands the accumulators to the registry as metric families at each scrape, with the
    sibling workers' counts added when there are any (``share_with``)."""

    def __init__(self, families: Sequence[Counts | Histograms]) -> None:
        self.families = families
        self.siblings: SiblingCounts | None = None

    def collect(self) -> Iterator[Metric]:
        if self.siblings is None:
            for family in self.families:
                yield family.family()
            return
        others = self.siblings.others({f.name: f.shape for f in self.families})
        for family in self.families:
            mine = family.values
            yield family.family(added(mine, [other.get(family.name, {}) for other in others]))

    def snapshot(self) -> Snapshot:
        return {family.name: dict(family.values) for family in self.families}


class PrometheusMetrics:
    """The ``keyturn.core.metrics.Metrics`` port, recording into ``self.registry``."""

    def __init__(
        self, *, process: bool = True, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._monotonic = monotonic
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.calls = Counts(
            "keyturn_api_calls",
            "Vendor API calls by vendor, action (unknown until routed) and answer code.",
            ["vendor", "action", "code"],
        )
        self.call_seconds = Histograms(
            "keyturn_api_call_duration_seconds",
            "Time to answer a vendor API call.",
            ["vendor", "action"],
            FAST_BUCKETS,
        )
        self.refusals = Counts(
            "keyturn_refusals",
            "Calls refused by the rate limit (rate_limit) or as a replayed request (replay).",
            ["vendor", "reason"],
        )
        self.resets = Histograms(
            "keyturn_reset_duration_seconds",
            "Tasks from creation to their final state, by product and outcome.",
            ["product", "outcome"],
            RESET_BUCKETS,
        )
        self.engine_seconds = Histograms(
            "keyturn_engine_operation_duration_seconds",
            "Engine operations by engine and operation.",
            ["engine", "op"],
            FAST_BUCKETS,
        )
        self.engine_errors = Counts(
            "keyturn_engine_operation_errors",
            "Failed engine operations by engine, operation and error class.",
            ["engine", "op", "error"],
        )
        self.audit = Histograms(
            "keyturn_audit_append_duration_seconds",
            "Time to append one record to the audit log.",
            [],
            FAST_BUCKETS,
        )
        self.audit.values[()] = [0.0] * (len(FAST_BUCKETS) + 2)  # shown from the start
        self.store = Histograms(
            "keyturn_store_statement_duration_seconds",
            "Store SQL statements by kind (select, insert, update, ...).",
            ["statement"],
            FAST_BUCKETS,
        )
        self._families = _Families(
            [
                self.calls,
                self.call_seconds,
                self.refusals,
                self.resets,
                self.engine_seconds,
                self.engine_errors,
                self.audit,
                self.store,
            ]
        )
        registry.register(self._families)
        self._tasks = Gauge(
            "keyturn_tasks",
            "Tasks in the store by state (all nodes').",
            ["state"],
            registry=registry,
        )
        self._leases = Gauge(
            "keyturn_leases_held", "Task leases this node holds.", registry=registry
        )
        if process:
            ProcessCollector(registry=registry)
        self._task_counts: TaskCounts | None = None
        self._counted_at = float("-inf")
        self._counting = asyncio.Lock()
        self._publishing: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ the port

    def api_call(self, vendor: str, action: str, code: str, seconds: float) -> None:
        self.calls.inc((vendor, action, code))
        self.call_seconds.observe((vendor, action), seconds)

    def refused(self, vendor: str, reason: str) -> None:
        self.refusals.inc((vendor, reason))

    def task_finished(self, product: str, outcome: str, seconds: float) -> None:
        self.resets.observe((product, outcome), seconds)

    def engine_op(self, engine: str, op: str, seconds: float, error: str | None) -> None:
        self.engine_seconds.observe((engine, op), seconds)
        if error is not None:
            self.engine_errors.inc((engine, op, error))

    def audit_append(self, seconds: float) -> None:
        self.audit.observe((), seconds)

    def store_statement(self, statement: str, seconds: float) -> None:
        self.store.observe((statement,), seconds)

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
        self.publish()
        return generate_latest(self.registry)

    # ------------------------------------------------------------------ --workers

    def share_with(self, siblings: SiblingCounts, every: float = PUBLISH_EVERY) -> None:
        """Count with the other workers of this server (``keyturn.telemetry.sibling_counts``):
        publish this worker's counters and histograms every ``every`` seconds, and add the
        siblings' to every scrape. ``keyturn_tasks`` is the store's already;
        ``keyturn_leases_held`` and ``process_*`` stay this worker's."""
        self._families.siblings = siblings
        self.publish()
        self._publishing = asyncio.get_running_loop().create_task(self._publish_every(every))

    def publish(self) -> None:
        if self._families.siblings is not None:
            self._families.siblings.publish(self._families.snapshot())

    async def _publish_every(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            self.publish()

    async def close(self) -> None:
        """Stop publishing, after a last snapshot (what this worker counted to the end)."""
        if self._publishing is not None:
            await stop(self._publishing)
            self._publishing = None
            self.publish()
