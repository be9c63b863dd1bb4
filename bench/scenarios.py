"""The benchmark scenarios of issue #3. Each measures keyturn and its baseline in the same run
and records ratios with their targets; absolute times are informative only."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from tests.support.keyturn_server import KEY_ID, KEY_SECRET, KeyturnServer
from tests.support.ports import free_port

from bench import harness
from bench.client import SignedClient, client_cost
from bench.stats import Check, Report, summary

#: Benchmarks run the server at its production log level.
QUIET = {"KEYTURN_LOG_LEVEL": "INFO"}
#: Seconds a keyturn server may take to start: generous, the machine may be shared and busy
#: (start-up time itself is scenario 5's figure, measured separately).
START_TIMEOUT = 90.0


def new_password() -> str:
    return "Bn-" + secrets.token_hex(10)


async def raw_reset_verify(admin: aioredis.Redis, port: int, durable: bool = False) -> float:
    """The baseline: ACL SETUSER on an open connection + a fresh AUTH with the new password.
    ``durable`` ("raw durable") persists the change before the fresh login, as a careful script
    does so that it survives an engine restart: ``CONFIG REWRITE`` (the benchmark's servers run
    from a config file without an aclfile; with one it would be ``ACL SAVE``)."""
    password = new_password()
    start = time.perf_counter()
    await admin.execute_command("ACL", "SETUSER", "default", "resetpass", f">{password}", "on")
    if durable:
        await admin.execute_command("CONFIG", "REWRITE")
    fresh = aioredis.Redis(
        host="127.0.0.1",
        port=port,
        username="default",
        password=password,
        protocol=2,
        driver_info=None,
        single_connection_client=True,
    )
    await fresh.ping()
    await fresh.aclose()
    return time.perf_counter() - start


async def keyturn_reset(client: SignedClient, instance_id: str) -> tuple[int, float, float]:
    """One ResetPassword through keyturn, waited until its task ends.
    Returns (task id, wall time sent, seconds to the API's answer)."""
    raw = client.build("ResetPassword", {"InstanceId": instance_id, "Password": new_password()})
    sent = time.time()
    start = time.perf_counter()
    answer = json.loads(await client.send(raw))["Response"]
    answered = time.perf_counter() - start
    if "Error" in answer:
        raise RuntimeError(answer["Error"]["Code"])
    task_id = int(answer["TaskId"])
    # Poll with backoff, far more eagerly than an SDK user would (they poll every second or
    # so); polls are server load, and an eager poller would measure itself. The latency
    # figures use keyturn's own clock, so polling does not pad them.
    delay = 0.004
    while True:
        info = await client.call("DescribeTaskInfo", {"TaskId": task_id})
        if info.get("Status") in ("succeed", "failed"):
            if info["Status"] != "succeed":
                raise RuntimeError(f"task {task_id} failed: {info.get('TaskMessage')}")
            return task_id, sent, answered
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)


async def connect(server: KeyturnServer) -> SignedClient:
    client = SignedClient("127.0.0.1", server.port, KEY_ID, KEY_SECRET)
    await client.connect()
    return client


async def reset_latency(root: Path, report: Report, n: int, scenario: str = "1") -> None:
    """Scenario 1: (a) answer latency vs raw reset+verify, (b) send -> verified on the engine vs
    the raw durable reset (persisted before the fresh login). ``scenario="7"``: the same run on
    the PostgreSQL store, reported as scenario 7's row (verified p50 <= 3x raw durable)."""
    [redis_server] = harness.start_redis(1)
    server = harness.keyturn_server(root / f"s{scenario}-latency", extra_env=QUIET)
    server.start(timeout=START_TIMEOUT)
    try:
        admin_pw = await harness.prepare_redis([redis_server])
        [instance_id] = await harness.register(server, [redis_server], admin_pw)
        admin = await harness.admin_client(redis_server)
        warm = max(10, n // 10)
        port = redis_server.port
        baseline = [await raw_reset_verify(admin, port) for _ in range(warm + n)][warm:]
        durable = [await raw_reset_verify(admin, port, True) for _ in range(warm + n)][warm:]
        # Keep the default password known to the admin connection for later runs.
        await admin.aclose()
        client = await connect(server)
        runs = [await keyturn_reset(client, instance_id) for _ in range(warm + n)][warm:]
        await client.close()
        verified = await harness.verified_times(server, [r[0] for r in runs])
        answers = [r[2] for r in runs]
        to_verified = [verified[t].timestamp() - sent for t, sent, _ in runs if t in verified]
    finally:
        server.stop()
        redis_server.close()
    base, dur = summary(baseline), summary(durable)
    a, b = summary(answers), summary(to_verified)
    detail = (
        f"raw p50 {base['p50_ms']:.2f} ms; raw durable p50 {dur['p50_ms']:.2f} ms, "
        f"p99 {dur['p99_ms']:.2f} ms"
    )
    if scenario == "7":
        report.data["postgres_store_reset_latency"] = {
            "baseline": base,
            "durable_baseline": dur,
            "answer": a,
            "verified": b,
        }
        report.checks.append(
            Check(
                "7 PostgreSQL store",
                "verified p50 / raw durable p50",
                b["p50_ms"] / dur["p50_ms"],
                3,
                "<=",
                f"{detail}; answer p50 {a['p50_ms']:.2f} ms, verified p50 {b['p50_ms']:.2f} ms",
            )
        )
        return
    report.data["reset_latency"] = {
        "baseline": base,
        "durable_baseline": dur,
        "answer": a,
        "verified": b,
        "client_cost_ms": client_cost() * 1e3,
    }
    report.samples.update(
        {
            "raw reset+verify": baseline,
            "raw durable reset+persist+verify": durable,
            "keyturn answer": answers,
            "keyturn send->verified": to_verified,
        }
    )
    report.checks += [
        Check(
            "1 reset latency",
            "(a) answer p50 / raw reset+verify p50",
            a["p50_ms"] / base["p50_ms"],
            2,
            "<=",
            f"{detail}; answer p50 {a['p50_ms']:.2f} ms",
        ),
        Check(
            "1 reset latency",
            "(b) verified p50 / raw durable p50",
            b["p50_ms"] / dur["p50_ms"],
            2,
            "<=",
            f"verified p50 {b['p50_ms']:.2f} ms",
        ),
        Check(
            "1 reset latency",
            "(b) verified p99 / raw durable p99",
            b["p99_ms"] / dur["p99_ms"],
            3,
            "<=",
            f"verified p99 {b['p99_ms']:.2f} ms",
        ),
    ]


async def _for(seconds: float, workers: int, body: Callable[[int], Awaitable[None]]) -> int:
    """Run ``body(worker)`` in a loop on ``workers`` coroutines for ``seconds``; count calls."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def loop(worker: int) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await body(worker)
            done += 1

    await asyncio.gather(*(loop(w) for w in range(workers)))
    return done


async def _verified_per_s(
    server: KeyturnServer, ids: list[str], seconds: float, clients: int
) -> float:
    """Verified resets per second through ``server``, one client per instance."""
    conns = [await connect(server) for _ in range(clients)]

    async def api(worker: int) -> None:
        await keyturn_reset(conns[worker], ids[worker])

    ours = await _for(seconds, clients, api) / seconds
    for c in conns:
        await c.close()
    return ours


async def reset_throughput(root: Path, report: Report, seconds: float, clients: int) -> None:
    """Scenario 2: verified resets per second, ``clients`` concurrent clients, one instance
    each (ResetPassword has one account per instance), vs an asyncio redis-py loop of raw
    durable resets (ACL SETUSER + CONFIG REWRITE + fresh AUTH) at the same concurrency."""
    servers = harness.start_redis(clients, hz=1)
    server = harness.keyturn_server(root / "s2", extra_env=QUIET)
    server.start(timeout=START_TIMEOUT)
    try:
        admin_pw = await harness.prepare_redis(servers)
        ids = await harness.register(server, servers, admin_pw)
        admins = [await harness.admin_client(s) for s in servers]

        async def raw(worker: int) -> None:
            await raw_reset_verify(admins[worker], servers[worker].port, True)

        base = await _for(seconds, clients, raw) / seconds
        for a in admins:
            await a.aclose()
        ours = await _verified_per_s(server, ids, seconds, clients)
    finally:
        server.stop()
        harness.stop_all(servers)
    report.data["reset_throughput"] = {"baseline_per_s": base, "keyturn_per_s": ours}
    report.checks.append(
        Check(
            "2 reset throughput",
            f"verified resets/s vs raw durable ({clients} clients)",
            ours / base,
            0.5,
            ">=",
            f"raw durable {base:.0f}/s, keyturn {ours:.0f}/s",
        )
    )


async def workers_throughput(root: Path, report: Report, seconds: float, clients: int) -> None:
    """Scenario 8: verified resets per second of ``keyturn serve --workers 2`` against
    ``--workers 1`` (one process), same clients and instances (scenario 2's load: one client
    per instance), in the same run."""
    servers = harness.start_redis(clients, hz=1)
    figures: dict[int, float] = {}
    try:
        admin_pw = await harness.prepare_redis(servers)
        for workers in (1, 2):
            server = harness.keyturn_server(
                root / f"s8-{workers}", extra_env=QUIET, extra_args=["--workers", str(workers)]
            )
            server.start(timeout=START_TIMEOUT)
            try:
                ids = await harness.register(server, servers, admin_pw)
                await _verified_per_s(server, ids, min(1.0, seconds), clients)  # warm up
                figures[workers] = await _verified_per_s(server, ids, seconds, clients)
            finally:
                server.stop()
    finally:
        harness.stop_all(servers)
    report.data["workers_throughput"] = {str(k): v for k, v in figures.items()}
    report.checks.append(
        Check(
            "8 serve --workers",
            f"verified resets/s, --workers 2 / --workers 1 ({clients} clients)",
            figures[2] / figures[1],
            1.5,
            ">=",
            f"1 worker {figures[1]:.0f}/s, 2 workers {figures[2]:.0f}/s",
        )
    )


async def _rps(port: int, raw: bytes, seconds: float, conns: int) -> float:
    clients = [SignedClient("127.0.0.1", port, KEY_ID, KEY_SECRET) for _ in range(conns)]
    for c in clients:
        await c.connect()

    async def one(worker: int) -> None:
        await clients[worker].send(raw)

    count = await _for(seconds, conns, one)
    for c in clients:
        await c.close()
    return count / seconds


async def api_overhead(
    root: Path, report: Report, seconds: float, conns: int = 8, scenario: str = "3"
) -> None:
    """Scenario 3: signed read calls per second vs a bare ASGI hello on the same stack.
    ``scenario="7"``: the same on the PostgreSQL store (target 0.25x)."""
    port = free_port()
    hello = subprocess.Popen(
        [sys.executable, "-m", "bench.hello", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    [redis_server] = harness.start_redis(1)
    server = harness.keyturn_server(root / f"s{scenario}-reads", extra_env=QUIET)
    server.start(timeout=START_TIMEOUT)
    try:
        for _ in range(100):
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        hello_raw = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        base = await _rps(port, hello_raw, seconds, conns)
        admin_pw = await harness.prepare_redis([redis_server])
        [instance_id] = await harness.register(server, [redis_server], admin_pw)
        client = await connect(server)
        task_id, _, _ = await keyturn_reset(client, instance_id)
        results = {}
        for action, params in [
            ("DescribeInstances", {"Limit": 20}),
            ("DescribeTaskInfo", {"TaskId": task_id}),
        ]:
            raw = client.build(action, params)
            results[action] = await _rps(server.port, raw, seconds, conns)
        await client.close()
    finally:
        hello.terminate()
        hello.wait()
        server.stop()
        redis_server.close()
    key = "api_overhead" if scenario == "3" else "postgres_store_api_overhead"
    report.data[key] = {"hello_per_s": base, **{k: v for k, v in results.items()}}
    for action, rps in results.items():
        report.checks.append(
            Check(
                "3 API overhead" if scenario == "3" else "7 PostgreSQL store",
                f"{action} req/s vs bare ASGI hello",
                rps / base,
                0.5 if scenario == "3" else 0.25,
                ">=",
                f"hello {base:.0f}/s, {action} {rps:.0f}/s",
            )
        )


async def fleet_rotation(root: Path, report: Report, count: int, in_flight: int = 50) -> None:
    """Scenario 4: reset ``default`` on ``count`` instances, ``in_flight`` calls at once, vs a
    hand-written asyncio script of raw durable resets (persisted, then a fresh login)."""
    servers = harness.start_redis(count, hz=1)
    server = KeyturnServer(root / "s4", extra_env=QUIET)
    server.start(timeout=START_TIMEOUT)
    try:
        admin_pw = await harness.prepare_redis(servers)
        ids = await harness.register(server, servers, admin_pw)
        admins = [await harness.admin_client(s) for s in servers]
        queue = list(range(count))

        async def drain(work: Callable[[int, int], Awaitable[object]]) -> float:
            pending = list(queue)
            start = time.perf_counter()

            async def worker(w: int) -> None:
                while pending:
                    await work(w, pending.pop())

            await asyncio.gather(*(worker(w) for w in range(in_flight)))
            return time.perf_counter() - start

        base = await drain(lambda w, i: raw_reset_verify(admins[i], servers[i].port, True))
        for a in admins:
            await a.aclose()
        conns = [await connect(server) for _ in range(in_flight)]

        async def through_api(w: int, i: int) -> None:
            await keyturn_reset(conns[w], ids[i])

        ours = await drain(through_api)
        for c in conns:
            await c.close()
    finally:
        server.stop()
        harness.stop_all(servers)
    report.data["fleet_rotation"] = {"instances": count, "baseline_s": base, "keyturn_s": ours}
    report.checks.append(
        Check(
            "4 fleet rotation",
            f"wall time vs hand-written durable script ({count})",
            ours / base,
            2,
            "<=",
            f"raw durable {base:.2f} s, keyturn {ours:.2f} s",
        )
    )


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def inventory_scale(root: Path, report: Report, big: int, samples: int = 500) -> None:
    """Scenario 5: DescribeInstances first/last page p99 at ``big`` vs 1,000 instances,
    start-up time and RSS. Both servers run at once and their calls alternate, so a busy
    moment of the machine lands on both sides of the ratio alike (a p99 is the first figure
    it moves)."""
    servers: dict[int, KeyturnServer] = {}
    startups: dict[int, float] = {}
    for count in (1000, big):
        server = KeyturnServer(root / f"s5-{count}", extra_env=QUIET)
        server.start(timeout=START_TIMEOUT)  # creates and migrates the store
        server.stop()
        harness.bulk_instances(server.data_dir, count)
        start = time.perf_counter()
        server.start(timeout=60)
        startups[count] = time.perf_counter() - start
        servers[count] = server
    results: dict[int, dict[str, Any]] = {count: {} for count in servers}
    try:
        clients = {count: await connect(server) for count, server in servers.items()}
        for name in ("first", "last"):
            offsets = {count: 0 if name == "first" else count - 20 for count in clients}
            raws = {
                count: client.build("DescribeInstances", {"Limit": 20, "Offset": offsets[count]})
                for count, client in clients.items()
            }
            for count, client in clients.items():
                for _ in range(10):  # steady state: the first call fills the listing cache
                    await client.send(raws[count])
            times: dict[int, list[float]] = {count: [] for count in clients}
            for _ in range(samples):
                for count, client in clients.items():
                    t0 = time.perf_counter()
                    await client.send(raws[count])
                    times[count].append(time.perf_counter() - t0)
            for count in clients:
                results[count][name] = summary(times[count])
        for client in clients.values():
            await client.close()
        for count, server in servers.items():
            assert server.process is not None
            results[count] |= {"startup_s": startups[count], "rss_mb": _rss_mb(server.process.pid)}
    finally:
        for server in servers.values():
            server.stop()
    empty = KeyturnServer(root / "s5-empty", extra_env=QUIET)
    empty.start(timeout=START_TIMEOUT)
    assert empty.process is not None
    await asyncio.sleep(1)
    idle_rss = _rss_mb(empty.process.pid)
    empty.stop()
    small, large = results[1000], results[big]
    report.data["inventory_scale"] = {str(k): v for k, v in results.items()} | {
        "idle_rss_mb": idle_rss
    }
    for page in ("first", "last"):
        report.checks.append(
            Check(
                "5 inventory scale",
                f"DescribeInstances {page} page p99 at {big} / at 1000",
                large[page]["p99_ms"] / small[page]["p99_ms"],
                1.5,
                "<=",
                f"{large[page]['p99_ms']:.2f} ms vs {small[page]['p99_ms']:.2f} ms",
            )
        )
    report.checks += [
        Check(
            "5 inventory scale",
            f"start-up seconds at {big} instances",
            large["startup_s"],
            3,
            "<=",
            "absolute target",
        ),
        Check(
            "5 inventory scale",
            f"RSS MB at {big} instances",
            large["rss_mb"],
            200,
            "<=",
            "absolute target",
        ),
        Check(
            "5 inventory scale", "idle RSS MB, empty server", idle_rss, 80, "<=", "absolute target"
        ),
    ]
