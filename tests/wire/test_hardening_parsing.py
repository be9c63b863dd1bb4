"""Security hardening (issue 11) of what anyone can send, with or without a key, against a real
keyturn server over raw HTTP:

- attack bodies sent before authentication (flattened names with huge indices, a flood of
  parameters, deep JSON) in every dialect are bounded: the server's RSS grows by less than
  50 MB and a concurrent signed ``DescribeTaskInfo`` is answered within 1 s (item 1);
- crafted numbers (Unicode digits such as ``²``, integers of thousands of digits) in
  timestamps, parameter indices, task ids and page sizes get documented codes, never
  ``InternalError`` nor a traceback (item 10);
- a request signed for a host this deployment does not serve is refused when
  ``KEYTURN_SERVED_HOSTS`` names the hosts it serves (item 12).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.alibaba_sdk import KvstoreSdk, acs3_request, rpc_query, sdk_error
from tests.support.huawei_sdk import (
    ClientRequestException,
    ListInstancesRequest,
    dcs_client,
    sdk_signed,
)
from tests.support.keyturn_server import HW_PROJECT, KeyturnServer
from tests.support.tencent_raw import legacy_call, tc3_post, tencent_error

pytestmark = pytest.mark.engine

MIB = 1024 * 1024


def rss_mb(keyturn: KeyturnServer) -> float:
    assert keyturn.process is not None
    for line in Path(f"/proc/{keyturn.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def attack_bodies(endpoint: str) -> list[tuple[str, dict[str, str], bytes, str]]:
    """(path, headers, body, what) of unauthenticated requests that cost a lot to parse in
    a careless server: each about 1 MiB."""
    # Tencent legacy form: under the parameter cap, every name a list index just below it.
    indexed = "&".join(f"P{i}.999.F.998.G={'x' * 900}" for i in range(999))
    flood = "&".join(f"A.{i}.B=1" for i in range(90_000))
    legacy = {"content-type": "application/x-www-form-urlencoded", "host": endpoint}
    tc3 = {
        "content-type": "application/json",
        "host": endpoint,
        "x-tc-action": "DescribeInstances",
        "x-tc-version": "2018-04-12",
        "x-tc-timestamp": str(int(time.time())),
        "authorization": "TC3-HMAC-SHA256 Credential=AKIDnope/2026-01-01/redis/tc3_request, "
        "SignedHeaders=content-type;host, Signature=" + "0" * 64,
    }
    acs = {
        "content-type": "application/x-www-form-urlencoded",
        "host": endpoint,
        "x-acs-action": "DescribeInstances",
    }
    huawei = {
        "content-type": "application/json",
        "host": endpoint,
        "x-sdk-date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
        "authorization": "SDK-HMAC-SHA256 Access=HWnope, SignedHeaders=host;x-sdk-date, "
        "Signature=" + "0" * 64,
    }
    nested = b"[" * (MIB - 10)
    return [
        ("/", legacy, f"SecretId=AKIDnope&Signature=x&{indexed}".encode()[: MIB - 1], "indexed"),
        ("/", legacy, f"SecretId=AKIDnope&Signature=x&{flood}".encode()[: MIB - 1], "flood"),
        ("/", tc3, json.dumps({"Items": [{"A": i} for i in range(60_000)]}).encode(), "tc3"),
        ("/", tc3, nested, "tc3 nested"),
        ("/", acs, flood.encode()[: MIB - 1], "acs flood"),
        (
            f"/v2/{HW_PROJECT}/instances/6d1d7a5c-1111-2222-3333-444455556666/password/reset",
            huawei,
            nested,
            "huawei nested",
        ),
    ]


def test_unauthenticated_attack_bodies_are_bounded(keyturn: KeyturnServer) -> None:
    def describe_task() -> None:
        response = tc3_post(keyturn.endpoint, "DescribeTaskInfo", {"TaskId": 1}, timeout=5)
        assert tencent_error(response) == "ResourceNotFound"

    describe_task()
    before = rss_mb(keyturn)
    bodies = attack_bodies(keyturn.endpoint)
    answers: list[tuple[str, int, bytes]] = []
    stop = threading.Event()

    def attack() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                for path, headers, body, what in bodies:
                    response = http.post(
                        f"http://{keyturn.endpoint}{path}", headers=headers, content=body
                    )
                    answers.append((what, response.status_code, response.content[:300]))

    attackers = [threading.Thread(target=attack) for _ in range(4)]
    for thread in attackers:
        thread.start()
    latencies: list[float] = []
    peak = before
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            start = time.monotonic()
            describe_task()
            latencies.append(time.monotonic() - start)
            peak = max(peak, rss_mb(keyturn))
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in attackers:
            thread.join()
    assert len(answers) >= len(bodies), "the attack did not run"
    assert max(latencies) < 1.0, f"a concurrent DescribeTaskInfo took {max(latencies):.2f} s"
    assert peak - before < 50, f"RSS grew from {before:.0f} to {peak:.0f} MB"
    for what, status, content in answers:
        assert status < 500, (what, status)
        assert b"InternalError" not in content and b"111500000" not in content, what


def test_signed_crafted_indices_are_refused_without_expansion(keyturn: KeyturnServer) -> None:
    before = rss_mb(keyturn)
    for index in ("999", "1000", "99999999", "²", "1" * 5000):
        params = {
            "InstanceId": "tdsql-abcdef12",
            f"Users.{index}.UserName": "app",
            f"Users.{index}.Host": "%",
            f"Users.{index}.Password": "Kt-Unused-1x",
        }
        response = legacy_call(keyturn.endpoint, "ResetUsersPassword", params, version="2021-11-22")
        code = tencent_error(response)
        assert code is not None and code.startswith(("InvalidParameter", "MissingParameter")), (
            index,
            code,
        )
    assert rss_mb(keyturn) - before < 50


RAW_TIMESTAMP_CASES = ["²", "1" * 5000, "-1", "1e9", " 1", "١٢٣"]


def send_bytes(keyturn: KeyturnServer, request: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", keyturn.port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


@pytest.mark.parametrize("stamp", RAW_TIMESTAMP_CASES)
def test_crafted_timestamps(keyturn: KeyturnServer, stamp: str) -> None:
    # TC3: the header is sent as UTF-8 bytes; no signature check is reached.
    request = (
        f"POST / HTTP/1.1\r\nHost: {keyturn.endpoint}\r\nContent-Type: application/json\r\n"
        "X-TC-Action: DescribeInstances\r\nX-TC-Version: 2018-04-12\r\n"
        f"X-TC-Timestamp: {stamp}\r\n"
        "Authorization: TC3-HMAC-SHA256 Credential=AKIDnope/2026-01-01/redis/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={'0' * 64}\r\n"
        "Content-Length: 2\r\nConnection: close\r\n\r\n{}"
    ).encode()
    status, body = send_bytes(keyturn, request)
    assert status == 200
    assert json.loads(body)["Response"]["Error"]["Code"] == "AuthFailure.SignatureExpire"
    # Legacy: a signed Timestamp parameter.
    response = legacy_call(keyturn.endpoint, "DescribeInstances", {}, timestamp=stamp)
    assert tencent_error(response) == "AuthFailure.SignatureExpire"


@pytest.mark.parametrize("task_id", ["²", "1" * 5000, "-5", "9" * 19, "0x10", " 7 ", "٣"], ids=repr)
def test_crafted_task_ids(keyturn: KeyturnServer, task_id: str) -> None:
    for method in ("GET", "POST"):
        response = legacy_call(
            keyturn.endpoint, "DescribeTaskInfo", {"TaskId": task_id}, method=method
        )
        code = tencent_error(response)
        assert code in ("InvalidParameter", "InvalidParameterValue", "ResourceNotFound"), code
    # JSON numbers: far out of range, and past Python's 4,300-digit int parsing limit.
    for raw in (b'{"TaskId": 1' + b"0" * 4000 + b"}", b'{"TaskId": 1' + b"0" * 5000 + b"}"):
        code = tencent_error(tc3_post(keyturn.endpoint, "DescribeTaskInfo", raw))
        assert code in ("InvalidParameter", "InvalidParameterValue"), code


def test_crafted_paging_in_alibaba_and_huawei(keyturn: KeyturnServer) -> None:
    for value in ("²", "1" * 5000, "-1", "١"):
        query, headers = acs3_request(keyturn.endpoint, "DescribeInstances", {"PageSize": value})
        response = httpx.post(f"http://{keyturn.endpoint}/?{query}", headers=headers, timeout=10)
        assert response.status_code == 400, response.text
        assert response.json()["Code"] == "InvalidParameter"
        url, signed = sdk_signed(
            keyturn.endpoint, "GET", f"/v2/{HW_PROJECT}/instances", query=[("offset", value)]
        )
        response = httpx.get(url, headers=signed, timeout=10)
        assert (response.status_code, response.json()["error_code"]) == (400, "111400063")
        url, signed = sdk_signed(keyturn.endpoint, "GET", f"/v2/{HW_PROJECT}/jobs/{value}")
        response = httpx.get(url, headers=signed, timeout=10)
        assert response.status_code in (400, 404), response.text


def test_crafted_content_length(keyturn: KeyturnServer) -> None:
    for length in ("²", "1" * 5000, "-1"):
        request = (
            f"POST / HTTP/1.1\r\nHost: {keyturn.endpoint}\r\nX-TC-Action: DescribeInstances\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n{{}}"
        ).encode()
        status, _ = send_bytes(keyturn, request)
        assert 400 <= status < 500


def test_no_traceback_after_crafted_input(keyturn: KeyturnServer) -> None:
    log = keyturn.log()
    assert "Traceback" not in log
    assert "unhandled error" not in log


# --------------------------------------------------------------------------- served hosts


@pytest.fixture
def served(tmp_path: Path) -> Iterator[KeyturnServer]:
    server = KeyturnServer(tmp_path / "served")
    server.start({"KEYTURN_SERVED_HOSTS": f"keyturn.internal:{server.port},localhost"})
    yield server
    server.stop()


def test_requests_signed_for_other_hosts_are_refused(served: KeyturnServer) -> None:
    port = served.port
    # Signed for 127.0.0.1, which this deployment does not serve.
    assert tencent_error(tc3_post(served.endpoint, "DescribeInstances")) == (
        "AuthFailure.SignatureFailure"
    )
    assert tencent_error(legacy_call(served.endpoint, "DescribeInstances", {})) == (
        "AuthFailure.SignatureFailure"
    )
    # Signed for a served name (sent to the same socket).
    for host in (f"keyturn.internal:{port}", f"localhost:{port}", f"KEYTURN.internal:{port}"):
        response = tc3_post(served.endpoint, "DescribeInstances", host=host)
        assert tencent_error(response) is None, host
    assert tencent_error(
        tc3_post(served.endpoint, "DescribeInstances", host="keyturn.internal:1")
    ) == ("AuthFailure.SignatureFailure")

    code = sdk_error(lambda: KvstoreSdk("tea", served.endpoint).call("DescribeInstances"))
    assert code == ("SignatureDoesNotMatch", 400)
    query, headers = acs3_request(f"localhost:{port}", "DescribeInstances", {})
    response = httpx.post(f"http://{served.endpoint}/?{query}", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    rpc = rpc_query("DescribeInstances", {})
    response = httpx.post(f"http://{served.endpoint}/?{rpc}", timeout=10)
    assert response.json()["Code"] == "SignatureDoesNotMatch"

    with pytest.raises(ClientRequestException) as caught:
        dcs_client(served.endpoint).list_instances(ListInstancesRequest())
    assert (caught.value.status_code, caught.value.error_code) == (401, "APIGW.0301")
    assert "Traceback" not in served.log()
