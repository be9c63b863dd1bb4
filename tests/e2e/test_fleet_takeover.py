"""A fleet job survives the loss of the node driving it: two ``keyturn serve`` nodes share one
data dir; the job is started, paused and resumed through the CLI (any node's store), the node
that drives it is SIGKILLed mid-job and the other one claims the job once its lease lapses and
finishes it. No target is rotated twice (one succeeded task each) and none is skipped (every
reported password logs in)."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from keyturn.core.fleet import FleetJob
from keyturn.core.model import Product
from keyturn.service.fleet import FleetJobs
from keyturn.store.fleet import SqlFleetRepo
from keyturn.store.sql import SqlStore
from tests.support.cli import keyturn_cli
from tests.support.fleet import FleetMember, job_tasks, redis_fleet, register
from tests.support.keyturn_server import TENANT, KeyturnServer
from tests.support.logins import can_login
from tests.support.passwords import USED_PASSWORDS

pytestmark = pytest.mark.engine

COUNT = 40
LEASE = "3"


def _status(server: KeyturnServer, job_id: str) -> FleetJob:
    async def go(store: SqlStore) -> FleetJob:
        return await FleetJobs(store, SqlFleetRepo(store.db)).status(job_id)

    return server.with_store(go)


def _wait(server: KeyturnServer, job_id: str, done: Callable[[FleetJob], bool]) -> FleetJob:
    deadline = time.monotonic() + 40
    while True:
        job = _status(server, job_id)
        if done(job):
            return job
        assert time.monotonic() < deadline, (job.state, job.counts, job.owner)
        time.sleep(0.1)


def test_the_other_node_finishes_a_job_whose_node_died(
    make_server: Callable[..., KeyturnServer], tmp_path: Path
) -> None:
    # 4 Redis changes a second: the job lasts about ten seconds, long enough to lose its node
    # in the middle even when the test's polling is slowed by a loaded machine.
    env = {"KEYTURN_TASK_LEASE": LEASE, "KEYTURN_RATE_LIMITS": "*=100000,redis:resetpassword=4"}
    a = make_server(extra_env=env)
    b = make_server(extra_env=env, data_dir=a.data_dir)
    a.start()
    b.start()
    nodes = {s.env["KEYTURN_NODE_ID"]: s for s in (a, b)}
    with redis_fleet(COUNT) as redises:
        members = [
            FleetMember(f"crs-take{i:04d}", Product.TENCENT_REDIS, r.admin_url())
            for i, r in enumerate(redises)
        ]
        register(a, members, "ap-take-1")
        started = keyturn_cli(
            a.data_dir, "rotate", "start", "--tenant", TENANT, "--region", "ap-take-1",
            "--canary", "2", "--max-in-flight", "4", "--paused",
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        job_id = started.stdout.split("fleet job ")[1].split(":")[0]
        # Steered from the store (any node): a pause holds, a resume goes on.
        assert "paused" in keyturn_cli(a.data_dir, "rotate", "pause", job_id).stdout
        time.sleep(1.5)
        held = _status(a, job_id)
        assert held.counts.finished == 0 and held.counts.in_flight == 0, held.counts
        assert "running" in keyturn_cli(a.data_dir, "rotate", "resume", job_id).stdout
        # The node driving the job dies mid-job; the other claims the job after the lease.
        driving = _wait(a, job_id, lambda j: j.owner is not None and j.counts.succeeded >= 8)
        driver = nodes[str(driving.owner)]
        survivor = b if driver is a else a
        driver.kill()
        killed_at = time.monotonic()
        assert _status(survivor, job_id).counts.pending > 0
        taken = _wait(survivor, job_id, lambda j: j.owner == survivor.env["KEYTURN_NODE_ID"])
        assert time.monotonic() - killed_at < float(LEASE) + 3
        assert taken.fence > driving.fence
        out = tmp_path / "outcomes.json"
        final = keyturn_cli(
            survivor.data_dir, "rotate", "status", job_id, "--wait", "--json", str(out),
            "--show-passwords",
        )  # fmt: skip
        assert final.returncode == 0, final.stdout + final.stderr
        targets = json.loads(out.read_text())["targets"]
        assert [t["state"] for t in targets] == ["succeeded"] * COUNT
        USED_PASSWORDS.extend(t["password"] for t in targets)
        for member, redis in zip(members, redises, strict=True):
            [target] = [t for t in targets if t["instance"] == member.instance_id]
            assert can_login(redis.port, target["password"]), member.instance_id
        tasks = job_tasks(survivor, job_id)
        succeeded = Counter(t.instance_id for t in tasks if t.state == "succeed")
        assert set(succeeded.values()) == {1} and len(succeeded) == COUNT
