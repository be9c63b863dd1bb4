"""Rate limits under load, end to end: a real ``keyturn serve`` with the documented limits (not the
test suite's ``*=100000``), real throwaway redis-servers, and the official SDKs.

The main test offers Tencent Redis ``ResetPassword`` at ten times its documented 20/s for 5 s
(200 TC3 requests a second, signed by the official SDK's own signer and sent open-loop by many
concurrent httpx requests, so a slow answer never slows the offer) and measures both the rate
it really offered and, for every wall-clock second, how many calls the limiter accepted. An
accepted call is anything but ``RequestLimitExceeded``: a queued reset, or the "reset already
running" answer the instance lock gives when accepted resets of one instance overlap. While the
flood runs, another tenant resets its own instance and the flooding tenant reads its instances:
neither is ever throttled. Accepted resets really run on the engines. Alibaba's and Huawei's SDKs
then meet their own throttling answers (``Throttling.User`` with HTTP 400, ``APIG.0308`` with
429) from a 1/s limit configured for those services, and a throttled reset changes nothing.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from alibabacloud_tea_openapi.exceptions import ClientException
from tencentcloud.common.http.request import RequestInternal
from tencentcloud.redis.v20180412 import models

from keyturn.core.model import Product
from keyturn.store.audit import SqlAuditLog
from tests.support.alibaba_sdk import KvstoreSdk
from tests.support.huawei_sdk import ClientRequestException, dcs_client, reset_password
from tests.support.keyturn_server import (
    HW_PROJECT,
    KEY_ID,
    KEY_SECRET,
    OTHER_KEY_ID,
    OTHER_KEY_SECRET,
    OTHER_TENANT,
    TENANT,
    KeyturnServer,
)
from tests.support.logins import can_login
from tests.support.passwords import USED_PASSWORDS, leaked, new_instance_id, new_password
from tests.support.sdk import redis_sdk, wait_task

pytestmark = pytest.mark.engine

#: Tencent's documented limit for Redis ResetPassword, per account and second.
LIMIT = 20
RATE = 10 * LIMIT
SECONDS = 5
#: Instances the flood resets, round robin (each on its own redis-server).
INSTANCES = 5
#: The other streams that run meanwhile, per second: the other tenant's resets, and reads.
OTHER_RATE = 5
READ_RATE = 20
THROTTLED = "RequestLimitExceeded"
#: Runs of the flood until one in which the client really offered the rate.
OFFER_ATTEMPTS = 3
#: What an accepted reset may answer: its task, or "a reset of this instance is running".
LOCKED = "ResourceUnavailable.InstanceLockedError"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyturnServer]:
    # The documented limits apply (no "*=100000"); Alibaba's and Huawei's services get 1/s so
    # that their SDKs, which call one at a time, meet throttling quickly.
    server = KeyturnServer(
        tmp_path_factory.mktemp("keyturn-rates"),
        extra_env={"KEYTURN_RATE_LIMITS": "kvstore:*=1,dcs:*=1"},
    )
    server.start()
    yield server
    if server.process is not None:
        server.stop()


@dataclass(frozen=True, slots=True)
class Outcome:
    sent: float
    done: float
    status: int
    #: The Tencent error code; "" for a success.
    code: str
    task_id: int = 0


class Signer:
    """TC3-signed requests made by the official SDK's own signer (no network)."""

    def __init__(self, endpoint: str, key_id: str, secret: str) -> None:
        self._endpoint = endpoint
        self._client = redis_sdk(endpoint, key_id=key_id, secret=secret)

    def sign(self, action: str, params: dict[str, Any]) -> tuple[dict[str, str], bytes]:
        request = RequestInternal(self._endpoint, "POST", "/", header={})
        self._client._build_req_inter(action, params, request)
        return dict(request.header), str(request.data).encode()


async def paced(
    rate: int, start: float, send: Callable[[int], Coroutine[Any, Any, Outcome]]
) -> list[Outcome]:
    """Start ``send(i)`` at ``start + i / rate`` for ``SECONDS``, never waiting for answers."""
    tasks: list[asyncio.Task[Outcome]] = []
    for i in range(rate * SECONDS):
        delay = start + i / rate - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(i)))
    return await asyncio.gather(*tasks)


async def post(http: httpx.AsyncClient, signed: tuple[dict[str, str], bytes]) -> Outcome:
    sent = time.time()
    response = await http.post("/", headers=signed[0], content=signed[1])
    done = time.time()
    body = response.json()["Response"]
    return Outcome(
        sent=sent,
        done=done,
        status=response.status_code,
        code=body.get("Error", {}).get("Code", ""),
        task_id=int(body.get("TaskId", 0)),
    )


@dataclass(frozen=True, slots=True)
class Run:
    start: float
    flood: list[Outcome]
    other_tenant: list[Outcome]
    reads: list[Outcome]


async def drive(
    endpoint: str, ids: list[str], passwords: list[str], other_id: str, others: list[str]
) -> Run:
    mine = Signer(endpoint, KEY_ID, KEY_SECRET)
    theirs = Signer(endpoint, OTHER_KEY_ID, OTHER_KEY_SECRET)

    def flood_request(i: int) -> tuple[dict[str, str], bytes]:
        # Every (instance, password) pair differs, so no two requests are alike: none can be
        # taken for a replay of another.
        instance = ids[(i // len(passwords)) % len(ids)]
        params = {"InstanceId": instance, "Password": passwords[i % len(passwords)]}
        return mine.sign("ResetPassword", params)

    # Every request is signed before the offer starts (well inside the signature's 5 minutes),
    # so that the client's CPU during the offer goes to sending alone.
    floods = [flood_request(i) for i in range(RATE * SECONDS)]
    theirs_signed = [
        theirs.sign("ResetPassword", {"InstanceId": other_id, "Password": password})
        for password in others
    ]
    reads_signed = [
        mine.sign("DescribeInstances", {"Limit": 10}) for _ in range(READ_RATE * SECONDS)
    ]
    # Connections idle for 2 s are not reused: uvicorn closes idle keep-alive connections after
    # 5 s, httpx's default expiry is the same 5 s, and a request sent on a connection the server
    # is closing at that moment fails with ReadError (seen once in CI).
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200, keepalive_expiry=2.0)
    async with httpx.AsyncClient(
        base_url=f"http://{endpoint}", limits=limits, timeout=60.0
    ) as http:
        # Warm the connection pool: new connections would otherwise slow the first second.
        warm = [mine.sign("DescribeInstances", {"Limit": 1}) for _ in range(30)]
        await asyncio.gather(*(post(http, signed) for signed in warm))
        # Start on a whole second, so that the 5 s of offer are 5 whole wall-clock seconds.
        start = math.ceil(time.time() + 0.2)
        flood, other_tenant, reads = await asyncio.gather(
            paced(RATE, start, lambda i: post(http, floods[i])),
            paced(OTHER_RATE, start, lambda i: post(http, theirs_signed[i])),
            paced(READ_RATE, start, lambda i: post(http, reads_signed[i])),
        )
    return Run(start=start, flood=flood, other_tenant=other_tenant, reads=reads)


def per_second(times: list[float], start: float) -> dict[int, int]:
    """How many of ``times`` fall in each whole second counted from ``start``."""
    counts = Counter(math.floor(t - start) for t in times)
    return {second: counts.get(second, 0) for second in range(min(counts), max(counts) + 1)}


async def admitted_times(store: Any) -> list[float]:
    """When the server admitted each of the tenant's resets (seconds since the epoch): the
    times of their ``started`` audit records."""
    records = await SqlAuditLog(store).search(
        tenant=TENANT, action="redis:ResetPassword", outcome="started", limit=100_000
    )
    return [record.event.at.timestamp() for record in records]


def latencies(outcomes: list[Outcome]) -> str:
    ms = sorted(1000 * (o.done - o.sent) for o in outcomes)
    p95 = ms[int(0.95 * (len(ms) - 1))]
    return f"p50 {statistics.median(ms):.0f} ms, p95 {p95:.0f} ms, max {ms[-1]:.0f} ms"


@pytest.mark.alone
def test_ten_times_the_documented_rate_for_five_seconds(
    server: KeyturnServer,
    redis_server_factory: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    redises = [redis_server_factory() for _ in range(INSTANCES)]
    ids = [new_instance_id() for _ in redises]
    for instance_id, redis in zip(ids, redises, strict=True):
        server.add_instance(instance_id, [redis.admin_url()])
    other_redis = redis_server_factory()
    other_id = new_instance_id()
    server.add_instance(other_id, [other_redis.admin_url()], tenant=OTHER_TENANT)
    for _attempt in range(OFFER_ATTEMPTS):
        # RATE passwords x INSTANCES instances: every flood request is unique.
        passwords = [new_password() for _ in range(RATE)]
        others = [new_password() for _ in range(OTHER_RATE * SECONDS)]
        run = asyncio.run(drive(server.endpoint, ids, passwords, other_id, others))
        sends = [o.sent for o in run.flood]
        offered = (len(sends) - 1) / (max(sends) - min(sends))
        offered_per_second = per_second(sends, run.start)
        with capsys.disabled():
            print(f"\n10x rate: offered {offered:.1f}/s, per second {offered_per_second}")
        # The client really offered ten times the limit, every second. When the machine
        # starved the client (a stalled host stops the client's clock-paced sends too), that
        # run measured nothing: it is run again, as its admissions are all answered by now.
        if offered >= 0.9 * RATE and all(
            offered_per_second[s] >= 0.7 * RATE for s in range(SECONDS)
        ):
            break

    flood = run.flood
    answered_per_second = per_second([o.done for o in flood], run.start)
    accepted = [o for o in flood if o.code != THROTTLED]
    # Acceptances are counted where the limiter counts them, in the server's wall-clock
    # seconds: by the "started" audit record each accepted change writes right after the
    # limiter let it through (an answer's arrival at the client may slip into the next
    # second when the server is busy).
    started = [t for t in server.with_store(admitted_times) if t >= run.start]
    accepted_per_second = per_second(started, run.start)
    seconds = sorted(set(accepted_per_second) | set(answered_per_second))
    accepted_per_second = {s: accepted_per_second.get(s, 0) for s in seconds}
    codes = Counter(o.code or "TaskId" for o in flood)
    with capsys.disabled():
        print(
            f"10x rate: answered per second {answered_per_second}; "
            f"accepted per second {accepted_per_second}; answers {dict(codes)}; "
            f"flood latency {latencies(flood)}; other tenant {latencies(run.other_tenant)}; "
            f"reads {latencies(run.reads)}"
        )
    assert offered >= 0.9 * RATE, offered
    assert all(offered_per_second[s] >= 0.7 * RATE for s in range(SECONDS)), offered_per_second
    assert len(flood) == RATE * SECONDS
    assert {o.status for o in flood} == {200}  # Tencent answers everything with 200: no 5xx
    assert set(codes) <= {"TaskId", LOCKED, THROTTLED}, codes
    # Each second's acceptances within one of the limit: never more than 21, and at least 19
    # in every full second, one in which the server answered at least twice the limit (all
    # five normally; a server starved of CPU by other processes may lag behind the offer).
    assert all(n <= LIMIT + 1 for n in accepted_per_second.values()), accepted_per_second
    full = [s for s, n in answered_per_second.items() if n >= 2 * LIMIT]
    assert len(full) >= SECONDS - 2, answered_per_second
    assert all(accepted_per_second.get(s, 0) >= LIMIT - 1 for s in full), accepted_per_second
    assert LIMIT * SECONDS - 1 <= len(accepted) <= (LIMIT + 1) * len(accepted_per_second)

    # Nothing else was throttled: the other tenant's resets, this tenant's reads.
    assert len(run.other_tenant) == OTHER_RATE * SECONDS and len(run.reads) == READ_RATE * SECONDS
    assert {o.status for o in run.other_tenant + run.reads} == {200}
    assert {o.code for o in run.other_tenant} <= {"", LOCKED}
    assert sum(1 for o in run.other_tenant if not o.code) >= OTHER_RATE * SECONDS // 2
    assert {o.code for o in run.reads} == {""}
    # Their latencies are printed, not asserted: on a shared 2-core machine they measure the
    # CPU left to the server, not the limiter (a throttled call costs about what a read does).

    # Accepted resets really ran: each instance ends with the password of its newest task
    # (task ids are random: DescribeTaskList lists the newest first).
    client = redis_sdk(server.endpoint)
    checked = 0
    for index, (instance_id, redis) in enumerate(zip(ids, redises, strict=True)):
        tasks = {
            o.task_id: i
            for i, o in enumerate(flood)
            if o.task_id and (i // len(passwords)) % len(ids) == index
        }
        if not tasks:
            # Every call admitted for this instance met its previous reset still running
            # (InstanceLockedError, a documented answer): nothing of it to check here.
            continue
        checked += 1
        listing = models.DescribeTaskListRequest()
        listing.InstanceId, listing.Limit = instance_id, 1
        task_id = client.DescribeTaskList(listing).Tasks[0].TaskId
        assert wait_task(client, task_id).Status == "succeed"
        assert can_login(redis.port, passwords[tasks[task_id] % len(passwords)])
    assert checked, "no reset was accepted"
    assert "unhandled error" not in server.log()
    assert leaked(server, USED_PASSWORDS) == []


def until_throttled(call: Callable[[int], None], attempts: int = 8) -> int:
    """Call ``call(n)`` twice at the start of a wall-clock second until the second call is
    refused (``call`` returns normally when accepted and raises ``Throttled`` when refused);
    the number of the refused call. Under a 1/s limit the first call of a second is accepted,
    so the second is refused unless the first took the whole second."""
    n = 0
    for _ in range(attempts):
        time.sleep(1.02 - time.time() % 1)
        second = int(time.time())
        call(n)
        n += 1
        if int(time.time()) != second:
            continue  # the first call took the whole second: try again
        try:
            call(n)
        except Throttled:
            return n
        n += 1
    raise AssertionError(f"no call was throttled in {attempts} tries")


class Throttled(Exception):
    pass


def test_alibaba_sdk_meets_throttling_user_with_http_400(
    server: KeyturnServer, redis_server: Any
) -> None:
    instance_id = "r-" + new_instance_id()[4:]
    server.add_instance(
        instance_id,
        [redis_server.admin_url()],
        product=Product.ALIBABA_KVSTORE,
        region="cn-hangzhou",
    )
    sdk = KvstoreSdk("tea", server.endpoint)
    passwords = [new_password() for _ in range(20)]
    accepted: list[int] = []
    seen: list[tuple[str, str, int]] = []

    def reset(n: int) -> None:
        # AccountName = InstanceId is the instance's default user.
        def go() -> None:
            sdk.call(
                "ResetAccountPassword",
                InstanceId=instance_id,
                AccountName=instance_id,
                AccountPassword=passwords[n],
            )

        try:
            go()
        except ClientException as exc:
            seen.append((type(exc).__name__, str(exc.code), int(exc.status_code)))
            raise Throttled() from None
        accepted.append(n)

    refused = until_throttled(reset)
    # The Tea SDK raises its ClientException (no x-acs-retry-after header: no
    # ThrottlingException) with the code and the HTTP status Alibaba documents.
    assert seen == [("ClientException", "Throttling.User", 400)]
    assert can_login(redis_server.port, passwords[accepted[-1]])
    assert not can_login(redis_server.port, passwords[refused])  # the refused one changed nothing


def test_huawei_sdk_meets_apig_0308_with_http_429(server: KeyturnServer, redis_server: Any) -> None:
    instance_id = str(uuid.uuid4())
    server.add_instance(
        instance_id,
        [redis_server.admin_url()],
        product=Product.HUAWEI_DCS,
        region="cn-north-4",
        tenant=HW_PROJECT,
    )
    client = dcs_client(server.endpoint)
    passwords = [new_password() for _ in range(20)]
    accepted: list[int] = []
    errors: list[ClientRequestException] = []

    def reset(n: int) -> None:
        try:
            reset_password(client, instance_id, new_password=passwords[n], no_password_access=False)
        except ClientRequestException as exc:
            errors.append(exc)
            raise Throttled() from None
        accepted.append(n)

    refused = until_throttled(reset)
    # No retries are configured in the SDK, so the 429 reaches the caller at once.
    [error] = errors
    assert (error.status_code, error.error_code) == (429, "APIG.0308")
    assert error.error_msg
    assert can_login(redis_server.port, passwords[accepted[-1]])
    assert not can_login(redis_server.port, passwords[refused])
