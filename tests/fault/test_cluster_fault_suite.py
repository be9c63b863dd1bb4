"""The cluster fault suite: randomized resets through three keyturn nodes on one PostgreSQL
store while the node running the task is SIGKILLed, a node is cut off the store until its lease
lapses, or a Redis node stops; every trial ends with the invariants checked, including that no
task ran on two nodes at once (see tests/fault/keyturn_nodes.py). The seed is printed;
``KEYTURN_FAULT_SEED`` replays a run and ``KEYTURN_FAULT_TRIALS`` scales the trial count."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable

import pytest

from tests.fault.keyturn_nodes import NodeTrials
from tests.support.fault_report import REPORT_LINES
from tests.support.fixtures import RedisServerFactory
from tests.support.keyturn_cluster import KeyturnCluster
from tests.support.passwords import USED_PASSWORDS, leaked, new_instance_id

pytestmark = pytest.mark.engine

#: A short lease (trust window 1.5 s) so that a takeover costs seconds; the engine timeout
#: stays within half of it, as the README requires. Short pauses at every worker step let a
#: fault at a random moment land at each of them.
LEASE = 3.0
ENGINE_TIMEOUT = 1.0
NODE_ENV = {
    "KEYTURN_ENGINE_TIMEOUT": f"{ENGINE_TIMEOUT:g}",
    "KEYTURN_TASK_DEADLINE": "3",
    "KEYTURN_FAULT_PAUSE": (
        "before_write_ahead=0.05,after_write_ahead=0.1,after_apply=0.1,during_verify=0.05"
    ),
}


def trials(default: int) -> int:
    scale = float(os.environ.get("KEYTURN_FAULT_TRIALS", "1"))
    return max(1, round(default * scale))


def test_three_nodes_on_postgres_redis_primary_and_replicas(
    make_cluster: Callable[..., KeyturnCluster], redis_server_factory: RedisServerFactory
) -> None:
    seed = int(os.environ.get("KEYTURN_FAULT_SEED", str(time.time_ns() % 1_000_000)))
    primary = redis_server_factory()
    replicas = [
        redis_server_factory(password=primary.password, replica_of=primary) for _ in range(2)
    ]
    for replica in replicas:
        replica.wait_link_up()
    engines = [primary, *replicas]
    cluster = make_cluster(lease=LEASE, extra_env=NODE_ENV)
    instance_id = new_instance_id()
    # keyturn logs in as default and resets it: no trial may lock it out.
    cluster.add_instance(instance_id, [e.url() for e in engines], allow_admin_reset=True)

    started = time.monotonic()
    harness = NodeTrials(
        cluster, engines, instance_id, random.Random(seed), engine_timeout=ENGINE_TIMEOUT
    )
    report = harness.run(trials(52))
    line = f"{report.line('cluster')} seed={seed} in {time.monotonic() - started:.0f}s"
    REPORT_LINES.append(line)
    print(line)
    assert not report.violations, "\n".join(report.violations)
    assert report.takeovers > 0
    for node in cluster.nodes:
        assert leaked(node, USED_PASSWORDS) == []
