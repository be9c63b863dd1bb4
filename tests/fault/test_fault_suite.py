"""The fault-injection suite: randomized resets of replicated instances while keyturn is killed
with SIGKILL, engine nodes stop and restart, replication links drop and, for Redis, a Sentinel
fails the primary over (two Redis trials in three: the primary killed during or before a
reset); every trial ends with the invariants checked (see tests/fault/harness.py). The seed is
printed, and ``KEYTURN_FAULT_SEED`` replays a run; ``KEYTURN_FAULT_TRIALS`` scales the trial
counts."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault.harness import Cluster, run_trials
from tests.fault.redis_cluster import RedisCluster
from tests.fault.sql_clusters import MariaDBCluster, PostgresCluster
from tests.support.fault_report import REPORT_LINES
from tests.support.fixtures import RedisServerFactory
from tests.support.keyturn_server import KeyturnServer
from tests.support.mysql_server import MariaDBServer
from tests.support.passwords import USED_PASSWORDS, leaked, new_instance_id, new_password
from tests.support.postgres_server import PostgresServer
from tests.support.redis_replication import prepare_failover
from tests.support.redis_sentinel import RedisSentinel
from tests.support.sql_replication import register_pg, register_tdsql

pytestmark = pytest.mark.engine

#: Short engine timeout and task deadline so outages past the deadline happen within seconds,
#: and pauses at each worker step so a SIGKILL at a random moment lands at every step.
SERVER_ENV = {
    "KEYTURN_ENGINE_TIMEOUT": "1",
    "KEYTURN_TASK_DEADLINE": "3",
    "KEYTURN_FAULT_PAUSE": "before_write_ahead=0.05,after_write_ahead=0.1,after_apply=0.1",
}


def trials(default: int) -> int:
    scale = float(os.environ.get("KEYTURN_FAULT_TRIALS", "1"))
    return max(1, round(default * scale))


@pytest.fixture
def seed() -> int:
    return int(os.environ.get("KEYTURN_FAULT_SEED", str(time.time_ns() % 1_000_000)))


@pytest.fixture
def keyturn(tmp_path: Path) -> Iterator[KeyturnServer]:
    server = KeyturnServer(tmp_path / "keyturn", extra_env=SERVER_ENV)
    server.start()
    yield server
    if server.process is not None:
        server.kill()


def run(name: str, server: KeyturnServer, cluster: Cluster, count: int, seed: int) -> None:
    started = time.monotonic()
    report = run_trials(server, cluster, count, random.Random(seed))
    line = f"{report.line(name)} seed={seed} in {time.monotonic() - started:.0f}s"
    REPORT_LINES.append(line)
    print(line)
    assert not report.violations, "\n".join(report.violations)
    assert not leaked(server, USED_PASSWORDS)


def test_redis_primary_and_replicas(
    keyturn: KeyturnServer, redis_server_factory: RedisServerFactory, seed: int
) -> None:
    primary = redis_server_factory()
    replicas = [
        redis_server_factory(password=primary.password, replica_of=primary) for _ in range(2)
    ]
    for replica in replicas:
        replica.wait_link_up()
    nodes = [primary, *replicas]
    # Every node may be a replica after a failover: the primary logs in with masterauth too,
    # as a Sentinel deployment sets it up.
    prepare_failover(primary)
    # The sentinel fails a stopped primary over within seconds; the trials stop it on purpose.
    sentinel = RedisSentinel(primary, down_after_ms=1000, failover_timeout_ms=3000).start()
    try:
        sentinel.wait_replicas(len(replicas))
        instance_id = new_instance_id()
        # keyturn logs in as default and resets it (its own admin, the replicas' and the
        # sentinel's login): the trials prove it never locks itself out, so the instance opts in.
        keyturn.add_instance(
            instance_id,
            [node.url() for node in nodes],
            sentinels=[sentinel.url()],
            allow_admin_reset=True,
        )
        # 45 trials, 30 of them failovers (each waits for the sentinel's ~3 s failover).
        run("redis", keyturn, RedisCluster(nodes, instance_id, sentinel), trials(45), seed)
    finally:
        sentinel.close()


def test_postgres_primary_and_standby(
    keyturn: KeyturnServer, postgres_pair: list[PostgresServer], seed: int
) -> None:
    nodes = postgres_pair
    instance_id = register_pg(keyturn, nodes)
    cluster = PostgresCluster.create(nodes, instance_id, new_password())
    run("postgres", keyturn, cluster, trials(25), seed)
    # keyturn sends verifiers only: no plaintext in the engines' statement logs either.
    logs = "".join(node.log_text() for node in nodes)
    assert [p for p in USED_PASSWORDS if p in logs] == []


def test_mariadb_primary_and_replica(
    keyturn: KeyturnServer, mariadb_pair: list[MariaDBServer], seed: int
) -> None:
    nodes = mariadb_pair
    instance_id = register_tdsql(keyturn, nodes)
    cluster = MariaDBCluster.create(nodes, instance_id, new_password())
    run("mariadb", keyturn, cluster, trials(25), seed)
    # keyturn sends hashes only: no plaintext in the general or binary logs either.
    logs = "".join(node.general_log_text() + node.binlog_text() for node in nodes)
    assert [p for p in USED_PASSWORDS if p in logs] == []
