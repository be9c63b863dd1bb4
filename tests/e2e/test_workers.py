"""``keyturn serve --workers 2`` end to end: two worker processes behind one port, each a full
node on the shared state of one SQLite store.

Both workers answer (``/healthz`` names the answering process), share a burst of new
connections and a killed one is replaced on its socket, the official Tencent SDK resets
a real redis-server's password through them, a rate limit holds for both together (counted in
the store, read back from the server's audit records per wall-clock second), and SIGTERM to the
supervisor stops every worker; so does its death by SIGKILL (Linux's parent-death signal).
The lock after wrong old passwords, reached through both workers, outlives a restart.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
    TencentCloudSDKException,
)
from tencentcloud.redis.v20180412 import models

from keyturn.core.model import Product
from keyturn.store.audit import SqlAuditLog
from tests.support.huawei_sdk import dcs_client, reset_password, update_password
from tests.support.keyturn_server import HW_PROJECT, TENANT, KeyturnServer
from tests.support.logins import can_login
from tests.support.passwords import new_instance_id, new_password
from tests.support.sdk import redis_sdk, wait_task

pytestmark = pytest.mark.engine

WORKERS = 2
#: The per-second limit of the read the test floods (the others are lifted, as in every test).
READ_LIMIT = 5


def parent_of(pid: int) -> int:
    """The parent process id of ``pid`` (from ``/proc``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for a reaper that may never come does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def answering_pids(endpoint: str, rounds: int = 20) -> set[str]:
    """The processes that answered ``/healthz`` over fresh connections, a burst at a time,
    until two did (the kernel hands each connection to whichever worker accepts first)."""
    seen: set[str] = set()
    for _ in range(rounds):
        async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) as http:
            answers = await asyncio.gather(
                *(http.get(f"http://{endpoint}/healthz", timeout=5) for _ in range(20))
            )
        seen |= {answer.headers["x-keyturn-pid"] for answer in answers}
        if len(seen) >= WORKERS:
            break
    return seen


async def pids_of_a_burst(port: int, n: int = 16) -> Counter[str]:
    """Open ``n`` connections at once (as a client's pool does), then ask each which worker
    holds it: the answering process of each kept-alive connection."""
    opened = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in range(n)))
    pids: Counter[str] = Counter()
    for reader, writer in opened:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: keyturn\r\n\r\n")
        head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
        pids[head.split("x-keyturn-pid: ")[1].split("\r\n")[0]] += 1
        writer.close()
    return pids


def flood_reads(endpoint: str, n: int) -> Counter[str]:
    """``n`` concurrent ``DescribeInstances`` over fresh connections (so both workers get
    some): their answer codes."""

    def one(_: int) -> str:
        try:
            redis_sdk(endpoint).DescribeInstances(models.DescribeInstancesRequest())
        except TencentCloudSDKException as exc:
            return str(exc.code)
        return "ok"

    async def go() -> list[str]:
        return list(await asyncio.gather(*(asyncio.to_thread(one, i) for i in range(n))))

    return Counter(asyncio.run(go()))


async def read_times(store: Any) -> list[float]:
    records = await SqlAuditLog(store).search(
        tenant=TENANT, action="redis:DescribeInstances", outcome="succeeded", limit=10_000
    )
    return [record.event.at.timestamp() for record in records]


def test_two_workers_serve_reset_share_limits_and_stop_together(
    make_server: Callable[..., KeyturnServer], redis_server: Any
) -> None:
    server = make_server(
        extra_args=["--workers", str(WORKERS)],
        extra_env={"KEYTURN_RATE_LIMITS": f"*=100000,redis:DescribeInstances={READ_LIMIT}"},
    )
    server.start()
    assert server.process is not None
    instance_id = new_instance_id()
    server.add_instance(instance_id, [redis_server.admin_url()])
    supervisor = server.process.pid

    pids = asyncio.run(answering_pids(server.endpoint))
    assert len(pids) == WORKERS, pids
    workers = [int(pid) for pid in pids]
    assert all(parent_of(pid) == supervisor for pid in workers)
    log = server.log()
    assert all(f"worker {pid} ready" in log for pid in workers)
    assert log.count("with 2 workers") == 1  # the store was prepared once, by the supervisor
    # A burst of connections is spread over the workers (a socket each, SO_REUSEPORT), not
    # taken by whichever worker woke first. 16 connections hashed over two: at least 2 each
    # but for a chance of 17 in 65,536.
    burst = asyncio.run(pids_of_a_burst(server.port))
    assert set(burst) == pids and min(burst.values()) >= 2, burst

    # A reset through the official SDK, end to end: the new password logs in.
    client = redis_sdk(server.endpoint)
    password = new_password()
    request = models.ResetPasswordRequest()
    request.InstanceId, request.Password = instance_id, password
    task_id = client.ResetPassword(request).TaskId
    assert wait_task(client, task_id).Status == "succeed"
    assert can_login(redis_server.port, password)

    # Both workers together accept at most the limit in each wall-clock second.
    time.sleep(math.ceil(time.time()) - time.time())
    codes = flood_reads(server.endpoint, 40)
    assert set(codes) <= {"ok", "RequestLimitExceeded"}, codes
    assert codes["RequestLimitExceeded"] > 0, codes
    per_second = Counter(math.floor(t) for t in server.with_store(read_times))
    assert per_second and max(per_second.values()) <= READ_LIMIT, per_second

    # A worker killed outright is replaced on its own socket: new connections are served
    # by the survivor and the replacement (those hashed to the dead one's socket wait in its
    # queue meanwhile), and both answer again.
    os.kill(workers[0], signal.SIGKILL)
    after = asyncio.run(answering_pids(server.endpoint))
    assert len(after) == WORKERS and str(workers[1]) in after, (workers, after)
    replacement = int(next(iter(after - {str(workers[1])})))
    assert replacement != workers[0] and parent_of(replacement) == supervisor

    # SIGTERM to the supervisor stops every worker.
    assert server.stop(signal.SIGTERM) == 0
    assert not any(alive(pid) for pid in (workers[1], replacement))


def test_workers_do_not_outlive_a_killed_supervisor(
    make_server: Callable[..., KeyturnServer],
) -> None:
    server = make_server(extra_args=["--workers", str(WORKERS)])
    server.start()
    workers = [int(pid) for pid in asyncio.run(answering_pids(server.endpoint))]
    assert len(workers) == WORKERS
    server.kill()  # SIGKILL: the supervisor cannot pass anything on
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers)


def test_the_change_lock_holds_on_every_worker_and_after_a_restart(
    make_server: Callable[..., KeyturnServer], redis_server: Any
) -> None:
    """Huawei DCS: five wrong old passwords through two workers lock changes; the lock holds
    after the server restarts (as one process now), even for the right old password."""
    server = make_server(extra_args=["--workers", str(WORKERS)])
    server.start()
    instance_id = str(uuid.uuid4())
    server.add_instance(
        instance_id,
        [redis_server.admin_url()],
        product=Product.HUAWEI_DCS,
        region="cn-north-4",
        tenant=HW_PROJECT,
    )
    current = new_password()
    reset_password(dcs_client(server.endpoint), instance_id, new_password=current)
    for left in (4, 3, 2, 1, 0):
        # A new client (a new connection) each time, so both workers take some.
        answer = update_password(
            dcs_client(server.endpoint), instance_id, old=new_password(), new=new_password()
        )
        assert answer.retry_times_left == str(left)
    assert answer.result == "locked"
    server.stop()

    server.extra_args = []
    server.start()
    blocked = new_password()
    answer = update_password(dcs_client(server.endpoint), instance_id, old=current, new=blocked)
    assert answer.result == "locked" and int(answer.lock_time_left) >= 1
    assert can_login(redis_server.port, current) and not can_login(redis_server.port, blocked)
