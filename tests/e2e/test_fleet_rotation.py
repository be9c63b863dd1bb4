"""One fleet job through the CLI over 200 real redis-servers, a PostgreSQL and a MariaDB: the
canary and doubling waves, a failure threshold tripped by 5% of the Redis engines being down
(the job pauses), ``resume`` once they are back, keyturn SIGKILLed mid-job and restarted, and
the outcomes JSON checked against the engines (every reported password logs in, the old ones
no longer). No target is rotated twice (one succeeded task each, counted in the store) and
none is skipped. The vendor rate for Redis is set to 40/s so the job lasts long enough to be
killed in the middle; no second of task creations exceeds it.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from keyturn.core.fleet import FleetJob, JobState
from keyturn.core.model import Product
from keyturn.service.fleet import FleetJobs
from keyturn.store.fleet import SqlFleetRepo
from keyturn.store.sql import SqlStore
from tests.support.cli import audit_records, keyturn_cli
from tests.support.fleet import FleetMember, job_tasks, redis_fleet, register
from tests.support.keyturn_server import TENANT, KeyturnServer
from tests.support.logins import can_login, can_login_mysql, can_login_postgres
from tests.support.mysql_server import MariaDBServer
from tests.support.passwords import USED_PASSWORDS, new_password
from tests.support.postgres_server import PostgresServer
from tests.support.sql_admin import create_role, create_user

pytestmark = pytest.mark.engine

REDIS = 200
DOWN = REDIS // 20  # 5 %
REDIS_RATE = 40
#: Changes the job may run at once (``--max-in-flight``).
IN_FLIGHT = 16
REGION = "ap-fleet-1"


def _status(server: KeyturnServer, job_id: str) -> FleetJob:
    async def go(store: SqlStore) -> FleetJob:
        return await FleetJobs(store, SqlFleetRepo(store.db)).status(job_id)

    return server.with_store(go)


def _wait(
    server: KeyturnServer, job_id: str, done: Callable[[FleetJob], bool], timeout: float = 60
) -> FleetJob:
    deadline = time.monotonic() + timeout
    while True:
        job = _status(server, job_id)
        if done(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} stuck: {job.state} {job.counts} {job.reason}")
        time.sleep(0.1)


@pytest.mark.alone
def test_fleet_job_waves_threshold_resume_and_kill(
    make_server: Callable[..., KeyturnServer],
    postgres_server: PostgresServer,
    mariadb_server: MariaDBServer,
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    server = make_server(
        extra_env={
            "KEYTURN_RATE_LIMITS": f"*=100000,redis:resetpassword={REDIS_RATE}",
            "KEYTURN_TASK_LEASE": "4",
        }
    )
    server.start()
    app_pg, app_my = new_password(), new_password()
    create_role(postgres_server, "app", app_pg)
    create_user(mariadb_server, "app", "%", app_my)
    with redis_fleet(REDIS) as redises:
        members = [
            FleetMember(f"crs-fleet{i:04d}", Product.TENCENT_REDIS, r.admin_url())
            for i, r in enumerate(redises)
        ]
        members.append(
            FleetMember("postgres-fleet0001", Product.TENCENT_POSTGRES, postgres_server.url())
        )
        members.append(
            FleetMember("tdsql-fleet0001", Product.TENCENT_TDMYSQL, mariadb_server.url())
        )
        register(server, members, REGION)
        old = {m.instance_id: r.password for m, r in zip(members, redises, strict=False)}
        # 5 % of the Redis engines are down, in the fifth wave (targets 75-154).
        down = redises[100 : 100 + DOWN]
        for r in down:
            r.stop()
        print(f"fleet up in {time.monotonic() - started:.1f} s")

        result = keyturn_cli(
            server.data_dir,
            "rotate", "start", "--tenant", TENANT, "--region", REGION,
            "--account", "postgres:app", "--account", "mysql:app@%",
            "--canary", "5", "--max-in-flight", str(IN_FLIGHT), "--stop-after-failures", "2%",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert f"{REDIS + 2} targets, 6 waves" in result.stdout
        job_id = result.stdout.split("fleet job ")[1].split(":")[0]

        # The threshold trips on the fifth wave: the job pauses by itself, once the changes
        # in flight have ended.
        paused = _wait(
            server, job_id, lambda j: j.state is JobState.PAUSED and j.counts.in_flight == 0
        )
        assert "--stop-after-failures 2%" in paused.reason
        assert 2 <= paused.counts.failures <= DOWN
        assert paused.counts.succeeded >= 75  # the canary and the first waves all went through
        tasks = job_tasks(server, job_id)
        # The changes already in flight when the threshold tripped (at most IN_FLIGHT past
        # the last stopped engine) may finish; nothing later starts, no later wave.
        untouched = {m.instance_id for m in members[100 + DOWN + IN_FLIGHT :]}
        assert not untouched & {t.instance_id for t in tasks}

        for r in down:
            r.start()
        resumed = keyturn_cli(server.data_dir, "rotate", "resume", job_id)
        assert resumed.returncode == 0, resumed.stderr
        assert "running" in resumed.stdout
        # Mid-job: SIGKILL keyturn, then start it again.
        _wait(server, job_id, lambda j: j.counts.succeeded >= 140, timeout=30)
        server.kill()
        mid = _status(server, job_id)
        assert mid.state is JobState.RUNNING and mid.counts.pending > 0, mid.counts
        server.start()

        out = tmp_path / "outcomes.json"
        final = keyturn_cli(
            server.data_dir, "rotate", "status", job_id, "--wait", "--json", str(out),
            "--show-passwords",
        )  # fmt: skip
        assert final.returncode == 0, final.stdout + final.stderr
        report: dict[str, Any] = json.loads(out.read_text())
        assert out.stat().st_mode & 0o777 == 0o600
        assert report["job"]["state"] == "done"
        assert report["job"]["counts"]["succeeded"] == REDIS + 2
        targets = report["targets"]
        assert [t["instance"] for t in targets] == [m.instance_id for m in members]
        assert Counter(t["wave"] for t in targets) == {0: 5, 1: 10, 2: 20, 3: 40, 4: 80, 5: 47}

        # Every reported password logs in; the old ones do not.
        by_id = {t["instance"]: t for t in targets}
        # The session's secret scan looks for them in the server's log and data dir.
        USED_PASSWORDS.extend(t["password"] for t in targets)
        for member, redis in zip(members, redises, strict=False):
            password = by_id[member.instance_id]["password"]
            assert can_login(redis.port, password), member.instance_id
            assert not can_login(redis.port, old[member.instance_id])
        assert can_login_postgres(
            postgres_server.port, "app", by_id["postgres-fleet0001"]["password"]
        )
        assert not can_login_postgres(postgres_server.port, "app", app_pg)
        assert can_login_mysql(mariadb_server.port, "app", by_id["tdsql-fleet0001"]["password"])
        assert not can_login_mysql(mariadb_server.port, "app", app_my)

        # No target rotated twice, none skipped: exactly one succeeded task per instance.
        tasks = job_tasks(server, job_id)
        succeeded = Counter(t.instance_id for t in tasks if t.state == "succeed")
        assert set(succeeded) == {m.instance_id for m in members}
        assert set(succeeded.values()) == {1}
        assert all(t.state in ("succeed", "failed") for t in tasks)
        # The engines that were down failed before any task existed (their probe failed) and
        # were tried again at the resume.
        retried = [by_id[m.instance_id]["attempts"] for m in members[100 : 100 + DOWN]]
        # The failures counted at the pause were tried twice; a target being claimed at the
        # SIGKILL counts one more attempt that changed nothing (see the audit check below).
        assert all(1 <= a <= 3 for a in retried)
        assert sum(a - 1 for a in retried) <= paused.counts.failures + IN_FLIGHT
        # The vendor rate. The limiter admits at most REDIS_RATE changes a second; a task row
        # is written after its admission and the engine's probe, so an admission late in one
        # second may be created in the next: one second holds at most two seconds' worth, and
        # the whole job never runs faster than the rate (+2: PostgreSQL and MariaDB).
        created = sorted(t.created_at for t in tasks)
        per_second = Counter(at.replace(microsecond=0) for at in created)
        assert max(per_second.values()) <= 2 * REDIS_RATE + 2
        span = (created[-1] - created[0]).total_seconds()
        assert len(created) <= REDIS_RATE * (span + 1) + 2
        # The audit log: one started and one succeeded record per rotated target.
        records = audit_records(
            server, "search", "--action", "fleet:RotatePassword", "--limit", "2000"
        )
        outcomes = Counter((r["resource"], r["outcome"]) for r in records)
        for member in members:
            assert outcomes[(f"{member.instance_id}/{by_id[member.instance_id]['account']}",
                             "succeeded")] == 1  # fmt: skip
        # A started record precedes every change, so every task has one. An attempt is
        # counted when its target is claimed, just before that record: the SIGKILL may land
        # between the two for the targets being started then (at most IN_FLIGHT), which
        # changed nothing and went back to pending at the restart.
        started_records = sum(1 for r in records if r["outcome"] == "started")
        attempts = sum(t["attempts"] for t in targets)
        assert len(tasks) <= started_records <= attempts <= started_records + IN_FLIGHT
        print(
            f"fleet test: {len(members)} targets, {len(tasks)} tasks, "
            f"{paused.counts.failures} failures at the pause, "
            f"{time.monotonic() - started:.1f} s"
        )
        assert "kt_admin" not in final.stdout
