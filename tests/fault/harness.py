"""The fault-injection harness: randomized trials of a reset against a replicated instance,
with keyturn killed (SIGKILL) at random moments, engine nodes stopped and restarted, and
replication links dropped, followed by a check of the invariants.

A ``Cluster`` adapts one engine topology (Redis primary + replicas, PostgreSQL primary +
standby, MariaDB primary + replica): how to reset through the official SDK, how to stop a node,
drop a link and check the invariants. ``run_trials`` drives them and counts what happened.

A topology that can fail over (``Failover``: Redis with a Sentinel) gets two trials in three a
failover: ``failover_during`` kills the primary (SIGKILL) while a reset runs (a third of the time
SIGKILLing keyturn too) and lets the sentinel promote another node before the old one starts
again; ``failover_between`` does that before the reset, and starts the old primary again just
before it (sometimes before it rejoined as a replica).

Invariants after every trial, once every node is up again and the task has ended:
- no lockout: the password the task reports (the new one if it succeeded, else the old one)
  logs in on every node, and the other one on none;
- nothing applied twice: each node holds exactly that one password (the engine's own view);
- replication is healthy: a write on the primary (the current one, after a failover) reaches
  every replica;
- keyturn still administers the instance (the next trial's reset goes through).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from tests.support.keyturn_server import KeyturnServer
from tests.support.passwords import new_password


class Cluster(Protocol):
    """One replicated instance registered in a keyturn server."""

    name: str
    #: The password every node currently accepts (what the last trial ended with).
    password: str

    def reset(self, server: KeyturnServer, new: str) -> str:
        """Reset through the official SDK; "succeed" or "failed" once the task has ended,
        waiting as long as needed (keyturn may be restarted meanwhile)."""
        ...

    def start_reset(self, server: KeyturnServer, new: str) -> object:
        """Send the reset and return a handle for ``finish_reset`` (for kill trials)."""
        ...

    def finish_reset(self, server: KeyturnServer, handle: object) -> str: ...

    def node_count(self) -> int: ...

    def stop_node(self, index: int) -> None: ...

    def start_node(self, index: int) -> None: ...

    def drop_links(self) -> None:
        """Cut every replication link (replicas reconnect by themselves)."""
        ...

    def violations(self, expected: str, other: str) -> list[str]:
        """Invariant violations, each a short description (no passwords in them)."""
        ...


@runtime_checkable
class Failover(Protocol):
    """A topology whose watchers fail over a primary that stopped answering."""

    def stop_primary(self) -> int:
        """Stop the current primary; its index."""
        ...

    def wait_promoted(self, index: int) -> None:
        """Wait until the watchers promoted another node than ``index``."""
        ...

    def start_node(self, index: int) -> None: ...


@dataclass
class Report:
    trials: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    def line(self, name: str) -> str:
        faults = ", ".join(f"{k}={v}" for k, v in sorted(self.faults.items()))
        outcomes = ", ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items()))
        return (
            f"{name}: trials={self.trials} {faults} outcomes[{outcomes}] "
            f"violations={len(self.violations)}"
        )


FAULTS = ("kill", "outage", "link_drop", "kill_and_outage", "none")
FAILOVER_FAULTS = ("failover_during", "failover_between")


def run_trials(server: KeyturnServer, cluster: Cluster, trials: int, rng: random.Random) -> Report:
    report = Report()
    failover = isinstance(cluster, Failover)
    for number in range(trials):
        fault = rng.choice(FAILOVER_FAULTS if failover and number % 3 != 1 else FAULTS)
        report.faults[fault] += 1
        report.trials += 1
        old, new = cluster.password, new_password()
        outcome = _trial(server, cluster, fault, new, rng)
        report.outcomes[outcome] += 1
        expected = new if outcome == "succeed" else old
        for problem in cluster.violations(expected, new if expected == old else old):
            report.violations.append(f"trial {number} ({fault}, {outcome}): {problem}")
        cluster.password = expected
    return report


def _trial(
    server: KeyturnServer, cluster: Cluster, fault: str, new: str, rng: random.Random
) -> str:
    if fault == "none":
        return cluster.reset(server, new)
    if fault in FAILOVER_FAULTS:
        assert isinstance(cluster, Failover)
        return _failover_trial(server, cluster, cluster, fault == "failover_during", new, rng)
    if fault == "link_drop":
        timer = threading.Timer(rng.uniform(0.0, 0.15), cluster.drop_links)
        timer.start()
        try:
            return cluster.reset(server, new)
        finally:
            timer.join()
    outage = None
    if fault in ("outage", "kill_and_outage"):
        outage = Outage(cluster.node_count(), cluster.stop_node, cluster.start_node, rng)
    handle = cluster.start_reset(server, new)
    if outage is not None:
        outage.begin()
    if fault in ("kill", "kill_and_outage"):
        time.sleep(rng.uniform(0.0, 0.3))
        server.kill()
        server.start()
    try:
        return cluster.finish_reset(server, handle)
    finally:
        if outage is not None:
            outage.end()


def _failover_trial(
    server: KeyturnServer,
    cluster: Cluster,
    failover: Failover,
    during: bool,
    new: str,
    rng: random.Random,
) -> str:
    if not during:
        index = failover.stop_primary()
        failover.wait_promoted(index)
        cluster.start_node(index)
        # Sometimes before the old primary rejoined as a replica, sometimes after.
        time.sleep(rng.choice((0.0, rng.uniform(0.0, 0.5))))
        return cluster.reset(server, new)
    handle = cluster.start_reset(server, new)
    time.sleep(rng.uniform(0.0, 0.3))
    index = failover.stop_primary()
    if rng.random() < 1 / 3:
        # keyturn dies too: the restarted one resumes the task on the instance as it is then.
        server.kill()
        server.start()
    failover.wait_promoted(index)
    time.sleep(rng.uniform(0.0, 0.5))
    cluster.start_node(index)
    return cluster.finish_reset(server, handle)


class Outage:
    """Stop one of ``count`` nodes, drawn at random, at a random moment and start it again a
    random while later (sometimes past the task's deadline)."""

    def __init__(
        self,
        count: int,
        stop: Callable[[int], object],
        start: Callable[[int], object],
        rng: random.Random,
    ) -> None:
        self._index = rng.randrange(count)
        self._stop, self._start = stop, start
        self._delay = rng.uniform(0.0, 0.2)
        self._down_for = rng.uniform(0.2, 4.0)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def begin(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        time.sleep(self._delay)
        self._stop(self._index)
        time.sleep(self._down_for)
        self._start(self._index)

    def end(self) -> None:
        self._thread.join()
