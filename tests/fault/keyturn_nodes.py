"""The cluster fault harness: randomized resets through three keyturn nodes on one PostgreSQL
store, with the node running the task killed, a node cut off the store until its lease lapses,
or an engine node stopped, followed by the invariants of ``tests/fault/harness.py`` and one
more that only a cluster can break.

Each trial sends a Tencent Redis ``ResetPassword`` (the official SDK) to a random node of a
``KeyturnCluster`` and injects one fault, drawn at random:

- ``kill``: a random while after the call was accepted, SIGKILL the node whose lease the task is
  under (the node that accepted it, unless the task ended already); a surviving node takes the
  task over once the lease lapses; the killed node is started again;
- ``partition``: the same node is cut off PostgreSQL (its proxy drops every connection and
  refuses new ones) until the task has ended on another node, then healed; it must be ready
  again (``/readyz`` 200);
- ``outage``: a random Redis node is stopped at a random moment and started again a random
  while later (sometimes past the task's deadline);
- ``none``.

The task's end is read from a node that kept the store. The fault lands only after the call
was answered with its task id: a call cut off between the store's commit and its answer cannot
tell its caller whether the task exists (that ambiguity belongs to any client of any service).

Invariants after every trial, every engine node up again: the password the task reports logs in
on every Redis node and the other one on none; each node holds exactly that one password;
replication is healthy; keyturn still administers the instance (the next trial's reset, and a
reset through every node at the end); and **no task ran on two nodes at once**: every node logs
each engine operation of a leased run with its fence (``acting on task T under fence F``, debug),
so for each task every fence belongs to one node, and the last operation under a fence starts
at least the engine timeout before the first one under the next fence (an operation begun just
inside the old node's trust window has ended before the new node begins).
"""

from __future__ import annotations

import itertools
import random
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

from tests.fault.harness import Outage
from tests.support.keyturn_cluster import KeyturnCluster
from tests.support.passwords import new_password
from tests.support.redis_replication import password_violations, replicated
from tests.support.redis_server import RedisServer
from tests.support.sdk import redis_sdk, reset, wait_task

FAULTS = ("kill", "partition", "outage", "none")
#: An operation's line in a node's log: its time (the log's ``asctime``), task and fence.
_ACTING = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*acting on task (\d+) under fence (\d+)$",
    re.MULTILINE,
)


@dataclass
class ClusterReport:
    trials: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    #: Tasks taken over by another node (a second fence acted on them).
    takeovers: int = 0
    #: The shortest time between one fence's last operation and the next fence's first.
    min_gap: float = float("inf")

    def line(self, name: str) -> str:
        faults = " ".join(f"{k}={self.faults.get(k, 0)}" for k in sorted(FAULTS))
        outcomes = ", ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items()))
        return (
            f"{name}: trials={self.trials} {faults} outcomes[{outcomes}] "
            f"takeovers={self.takeovers} min_fence_gap={self.min_gap:.1f}s "
            f"violations={len(self.violations)}"
        )


class NodeTrials:
    """Trials of one replicated Redis instance behind a three-node keyturn cluster."""

    def __init__(
        self,
        cluster: KeyturnCluster,
        engines: list[RedisServer],
        instance_id: str,
        rng: random.Random,
        *,
        engine_timeout: float,
    ) -> None:
        self.cluster = cluster
        self.engines = engines
        self.instance_id = instance_id
        self.rng = rng
        self.engine_timeout = engine_timeout
        self.password = engines[0].password or ""
        self.report = ClusterReport()
        #: A killed node starting again meanwhile (waited for before the next trial).
        self._restarting: int | None = None

    # ------------------------------------------------------------------ trials

    def run(self, trials: int) -> ClusterReport:
        for number in range(trials):
            fault = self.rng.choice(FAULTS)
            self.report.faults[fault] += 1
            self.report.trials += 1
            old, new = self.password, new_password()
            outcome, task_id = self._trial(fault, new)
            self.report.outcomes[outcome] += 1
            expected = new if outcome == "succeed" else old
            problems = self._violations(expected, new if expected == old else old)
            if task_id is not None:
                problems += self._overlaps(task_id)
            for problem in problems:
                self.report.violations.append(f"trial {number} ({fault}, {outcome}): {problem}")
            self.password = expected
        self._settle()
        for index, node in enumerate(self.cluster.nodes):
            final = new_password()
            outcome = self._reset_through(index, final)
            if outcome != "succeed":
                self.report.violations.append(f"a final reset through node {index}: {outcome}")
                continue
            old, self.password = self.password, final
            self.report.violations += [
                f"final reset through {node.endpoint}: {p}" for p in self._violations(final, old)
            ]
        return self.report

    def _reset_through(self, index: int, new: str) -> str:
        client_ = redis_sdk(self.cluster.nodes[index].endpoint)
        try:
            task_id = reset(client_, self.instance_id, Password=new)
        except TencentCloudSDKException as exc:
            return f"refused:{exc.get_code()}"
        return str(wait_task(client_, task_id, timeout=120).Status)

    def _settle(self) -> None:
        """Every node up and ready (a killed one has restarted)."""
        if self._restarting is not None:
            node = self.cluster.nodes[self._restarting]
            node.wait_started(timeout=60)
            self._restarting = None
        for node in self.cluster.nodes:
            self.cluster.wait_ready(node)

    def _trial(self, fault: str, new: str) -> tuple[str, int | None]:
        self._settle()
        sender = self.rng.randrange(len(self.cluster.nodes))
        outage = None
        if fault == "outage":
            engines = self.engines
            outage = Outage(
                len(engines), lambda i: engines[i].stop(), lambda i: engines[i].start(), self.rng
            )
        if outage is not None:
            outage.begin()
        try:
            try:
                task_id = reset(
                    redis_sdk(self.cluster.nodes[sender].endpoint), self.instance_id, Password=new
                )
            except TencentCloudSDKException as exc:
                return f"refused:{exc.get_code()}", None
            victim = sender
            if fault in ("kill", "partition"):
                time.sleep(self.rng.uniform(0.0, 0.4))
                owner = self.cluster.owner(task_id)
                if owner is not None:
                    victim = self.cluster.index_of(owner)
                if fault == "kill":
                    self.cluster.nodes[victim].kill()
                else:
                    self.cluster.partition(victim)
            survivor = (victim + self.rng.randrange(1, len(self.cluster.nodes))) % len(
                self.cluster.nodes
            )
            info = wait_task(redis_sdk(self.cluster.nodes[survivor].endpoint), task_id, timeout=120)
            if fault == "kill":
                self.cluster.nodes[victim].launch()
                self._restarting = victim
            elif fault == "partition":
                self.cluster.heal(victim)
            return str(info.Status), task_id
        finally:
            if outage is not None:
                outage.end()

    # ------------------------------------------------------------------ invariants

    def _violations(self, expected: str, other: str) -> list[str]:
        found: list[str] = []
        for engine in self.engines:
            if not engine.running:
                engine.start()
            engine.password = expected
        found += password_violations(
            self.engines, self.engines[1:], expected, other, name="redis node"
        )
        if not found and not replicated(self.engines, expected, f"fault-{time.monotonic_ns()}"):
            found.append("a write on the primary did not reach every replica")
        return found

    def _overlaps(self, task_id: int) -> list[str]:
        """Nodes that acted on ``task_id`` at once (see the module docstring)."""
        by_fence: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
        for index, node in enumerate(self.cluster.nodes):
            for at, task, fence in _ACTING.findall(node.log()):
                if int(task) == task_id:
                    moment = datetime.strptime(at, "%Y-%m-%d %H:%M:%S,%f")
                    by_fence[int(fence)].append((moment, index))
        found: list[str] = []
        fences = sorted(by_fence)
        for fence in fences:
            nodes = {index for _, index in by_fence[fence]}
            if len(nodes) > 1:
                found.append(f"task {task_id}: fence {fence} acted on from nodes {sorted(nodes)}")
        for before, after in itertools.pairwise(fences):
            last = max(at for at, _ in by_fence[before])
            first = min(at for at, _ in by_fence[after])
            gap = (first - last).total_seconds()
            self.report.min_gap = min(self.report.min_gap, gap)
            if gap < self.engine_timeout:
                found.append(
                    f"task {task_id}: fence {after} acted {gap:.3f} s after fence {before}'s "
                    f"last operation (less than the engine timeout)"
                )
        if len(fences) > 1:
            self.report.takeovers += 1
        return found
