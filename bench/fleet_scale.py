"""``python -m bench.fleet_scale``: one fleet rotation job over 10,000 Redis instances (issue 17,
scale check). 500 are real redis-servers; the rest are served by the port-level fake of
``tests.support.fake_resp`` (run by this harness in two child processes, one port per fake
instance, so each has its own identity and ACL users). Instances are inserted straight into
the keyturn server's SQLite store, sealed as keyturn seals them; the job is started with
``keyturn rotate start`` and followed through the store until it is done.

Reported: wall time of the job and its rate; the keyturn server's RSS before the job and its
peak during it, and at 10 % and 90 % of the job (the driver holds only the targets in flight,
so memory must not grow with progress); the store's size before and after; every target's
outcome, and every reported password checked by a fresh login on its engine. Results go to
``bench/results/fleet_scale.json``. ``--total`` and ``--real`` shrink the run (a smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from tests.support.cli import keyturn_cli
from tests.support.fleet import redis_fleet
from tests.support.keyturn_server import TENANT, KeyturnServer
from tests.support.logins import can_login
from tests.support.ports import free_port

from keyturn.bootstrap import open_admin_store
from keyturn.config import load_settings
from keyturn.core.fleet import FleetJob, JobState
from keyturn.core.model import KeySource, Product
from keyturn.core.secrets import Secret
from keyturn.service.admin import build_instance
from keyturn.service.fleet import FleetJobs
from keyturn.store import rows, schema
from keyturn.store.fleet import SqlFleetRepo
from keyturn.store.listing import BUMP_GENERATION
from keyturn.store.sealing import AesGcmSecretBox, load_or_create_master_key

RESULTS = Path(__file__).parent / "results"
FAKE_ADMIN = "kadmin"
FAKE_PROCESSES = 2


def start_fakes(count: int, admin_password: str) -> tuple[list[subprocess.Popen[str]], list[int]]:
    """The fake instances, split over ``FAKE_PROCESSES`` children; their ports."""
    procs, ports = [], []
    share = -(-count // FAKE_PROCESSES)
    for i in range(FAKE_PROCESSES):
        n = min(share, count - i * share)
        if n <= 0:
            break
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.fake_resp", str(n), FAKE_ADMIN, admin_password,
             "Def-" + secrets.token_hex(8)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        procs.append(proc)
    for proc in procs:
        assert proc.stdout is not None
        ports += json.loads(proc.stdout.readline())["ports"]
    return procs, ports


def bulk_register(data_dir: Path, urls: list[str], batch: int = 2000) -> list[str]:
    """Insert one tencent-redis instance per URL into the server's SQLite store."""
    box = AesGcmSecretBox(load_or_create_master_key(data_dir, None))
    engine = sa.create_engine(f"sqlite:///{data_dir / 'keyturn.db'}")
    now = datetime.now(UTC)
    ids = [f"crs-scale{n:06d}" for n in range(len(urls))]
    with engine.begin() as conn:
        for start in range(0, len(urls), batch):
            inst_rows, node_rows = [], []
            for n in range(start, min(len(urls), start + batch)):
                instance = build_instance(
                    tenant_id=TENANT,
                    instance_id=ids[n],
                    product=Product.TENCENT_REDIS,
                    region="ap-guangzhou",
                    node_urls=[Secret(urls[n])],
                    name="",
                    password_free_allowed=True,
                    source=KeySource.CLI,
                )
                inst_rows.append(
                    {"id": instance.id, "tenant_id": TENANT, "product": str(instance.product),
                     "region": instance.region, "name": "", "password_free_allowed": True,
                     "no_auth": None, "engine_version": None, "source": "cli",
                     "created_at": now}
                )  # fmt: skip
                node_rows.append(
                    rows.node_values(
                        instance.nodes[0], lambda text, ctx: box.seal(text, context=ctx)
                    )
                )
            conn.execute(schema.instances.insert(), inst_rows)
            conn.execute(schema.nodes.insert(), node_rows)
        conn.execute(BUMP_GENERATION)
    engine.dispose()
    return ids


def store_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir.glob("keyturn.db*"))


async def _with_fleet(server: KeyturnServer, action: Any) -> Any:
    settings = load_settings(data_dir=server.data_dir, env=server.store_env)
    store = await open_admin_store(settings)
    try:
        return await action(FleetJobs(store, SqlFleetRepo(store.db)))
    finally:
        await store.close()


def status(server: KeyturnServer, job_id: str) -> FleetJob:
    job: FleetJob = asyncio.run(_with_fleet(server, lambda f: f.status(job_id)))
    return job


def outcomes(server: KeyturnServer, job_id: str) -> list[tuple[str, str, str | None]]:
    async def read(fleet: FleetJobs) -> list[tuple[str, str, str | None]]:
        found = []
        async for o in fleet.outcomes(job_id, passwords=True):
            secret = None if o.password is None else o.password.reveal()
            found.append((o.target.instance_id, str(o.target.state), secret))
        return found

    result: list[tuple[str, str, str | None]] = asyncio.run(_with_fleet(server, read))
    return result


def run(root: Path, total: int, real: int, in_flight: int, canary: int) -> dict[str, Any]:
    fake_admin_pw = "Ka-" + secrets.token_hex(12)
    started = time.perf_counter()
    with redis_fleet(real) as redises:
        procs, ports = start_fakes(total - real, fake_admin_pw)
        try:
            urls = [r.admin_url() for r in redises] + [
                f"redis://{FAKE_ADMIN}:{fake_admin_pw}@127.0.0.1:{p}" for p in ports
            ]
            server = KeyturnServer(root / "scale", extra_env={"KEYTURN_LOG_LEVEL": "WARNING"})
            server.data_dir.mkdir(parents=True, exist_ok=True)
            server.start()
            server.stop()  # the schema and the master key exist now
            ids = bulk_register(server.data_dir, urls)
            # The fakes bound port 0 while the server was down: its old port may be theirs now.
            server.port = free_port()
            server.start()
            setup = time.perf_counter() - started
            rss_idle = server.rss()
            store_before = store_bytes(server.data_dir)
            t0 = time.perf_counter()
            result = keyturn_cli(
                server.data_dir, "rotate", "start", "--tenant", TENANT,
                "--canary", str(canary), "--max-in-flight", str(in_flight),
                "--stop-after-failures", "0",
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            job_id = result.stdout.split("fleet job ")[1].split(":")[0]
            start_s = time.perf_counter() - t0
            peak, at = rss_idle, {}
            while True:
                job = status(server, job_id)
                if server.process is None or server.process.poll() is not None:
                    raise RuntimeError("keyturn died:\n" + server.log()[-4000:])
                rss = server.rss()
                peak = max(peak, rss)
                done = job.counts.finished / job.counts.total
                for mark in (0.1, 0.5, 0.9):
                    if done >= mark and mark not in at:
                        at[mark] = rss
                if job.state is not JobState.RUNNING:
                    break
                time.sleep(1.0)
            wall = time.perf_counter() - t0
            found = outcomes(server, job_id)
            server.stop()  # a clean stop checkpoints the WAL into the database file
            store_after = store_bytes(server.data_dir)
            port_of = dict(zip(ids, [r.port for r in redises] + ports, strict=True))
            with ThreadPoolExecutor(16) as pool:
                logins = list(
                    pool.map(lambda o: o[2] is not None and can_login(port_of[o[0]], o[2]), found)
                )
        finally:
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.close()
                proc.wait(10)
    states: dict[str, int] = {}
    for _, state, _ in found:
        states[state] = states.get(state, 0) + 1
    return {
        "instances": total,
        "real_redis": real,
        "fake_redis": total - real,
        "max_in_flight": in_flight,
        "canary": canary,
        "waves": job.waves,
        "job_state": str(job.state),
        "outcomes": states,
        "passwords_log_in": sum(logins),
        "setup_s": round(setup, 1),
        "start_command_s": round(start_s, 2),
        "wall_s": round(wall, 1),
        "targets_per_s": round(total / wall, 1),
        "rss_idle_mb": round(rss_idle / 2**20, 1),
        "rss_peak_mb": round(peak / 2**20, 1),
        "rss_at_progress_mb": {f"{int(k * 100)}%": round(v / 2**20, 1) for k, v in at.items()},
        "store_before_mb": round(store_before / 2**20, 2),
        "store_after_mb": round(store_after / 2**20, 2),
        "store_growth_bytes_per_target": round((store_after - store_before) / total),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--total", type=int, default=10_000)
    parser.add_argument("--real", type=int, default=500)
    parser.add_argument("--max-in-flight", type=int, default=64)
    parser.add_argument("--canary", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS / "fleet_scale.json")
    parser.add_argument("--keep", type=Path, default=None, help="work here and keep it")
    args = parser.parse_args()
    if args.keep is not None:
        figures = run(args.keep, args.total, args.real, args.max_in_flight, args.canary)
    else:
        with tempfile.TemporaryDirectory(prefix="keyturn-fleet-scale-") as tmp:
            figures = run(Path(tmp), args.total, args.real, args.max_in_flight, args.canary)
    args.out.write_text(json.dumps(figures, indent=1) + "\n")
    for name, value in figures.items():
        print(f"{name:32} {value}")
    ok = figures["outcomes"].get("succeeded") == args.total == figures["passwords_log_in"]
    print("PASS" if ok else "MISS", "- every target succeeded and its password logs in")


if __name__ == "__main__":
    main()
