"""The HTTP edge under hostile clients, against a real ``keyturn serve`` (issue #11): 200
connections stalled one byte short of a 1 MiB body, headers dribbled a byte at a time, more
connections than ``KEYTURN_MAX_CONNECTIONS`` and 1 MiB access key ids must not grow the server's
memory past a bound nor keep another client from its answer, and stalled or dribbling
connections are closed at ``KEYTURN_READ_TIMEOUT``. ``X-Forwarded-For`` is believed only from
``KEYTURN_TRUSTED_PROXIES``. The time and memory bounds are the generous ones the issue sets:
RSS growth under 50 MB, another client answered within 1 s."""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import urlencode

import httpx
import pytest
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

from keyturn.http.edge import MAX_HEAD_BYTES
from tests.support.cli import audit_records
from tests.support.keyturn_server import KeyturnServer
from tests.support.sdk import redis_sdk, task_info

MiB = 1024 * 1024
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
#: "RSS growth under 50 MB".
RSS_BOUND = 50 * 1000 * 1000
#: No task has this id: DescribeTaskInfo answers ResourceNotFound without touching an engine.
NO_TASK = 424242


def describe_task(server: KeyturnServer) -> str:
    """A signed DescribeTaskInfo through the official SDK on a fresh connection: the error
    code of its answer (or of the SDK's network error)."""
    try:
        task_info(redis_sdk(server.endpoint), NO_TASK)
    except TencentCloudSDKException as exc:
        return str(exc.get_code())
    return "answered without an error"


def address(server: KeyturnServer) -> tuple[str, int]:
    return ("127.0.0.1", server.port)


class StalledUploads:
    """``count`` connections, each declaring a ``size``-byte body to the Tencent dialect and
    sending all of it but the last byte as fast as the server reads it. A background thread
    pumps them and records when the server closes each (and whether it answered any)."""

    def __init__(self, server: KeyturnServer, count: int, size: int) -> None:
        head = (
            f"POST / HTTP/1.1\r\nHost: {server.endpoint}\r\nContent-Type: application/json\r\n"
            f"X-TC-Action: DescribeTaskInfo\r\nContent-Length: {size}\r\n\r\n"
        ).encode()
        self._data = memoryview(head + b" " * (size - 1))
        self.started = time.monotonic()
        self._socks = [socket.create_connection(address(server)) for _ in range(count)]
        self.closed_at: dict[int, float] = {}
        self.answered: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        selector = selectors.DefaultSelector()
        sent = [0] * len(self._socks)
        for i, sock in enumerate(self._socks):
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, i)
        while not self._stop.is_set() and len(self.closed_at) < len(self._socks):
            for key, events in selector.select(timeout=0.1):
                i, ready = key.data, key.fileobj
                assert isinstance(ready, socket.socket)
                sock = ready
                if events & selectors.EVENT_READ:
                    try:
                        data = sock.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if data:
                        self.answered.add(i)
                        continue
                    self.closed_at[i] = time.monotonic()
                    selector.unregister(sock)
                    continue
                try:
                    sent[i] += sock.send(self._data[sent[i] :])
                except BlockingIOError:
                    continue
                except OSError:
                    self.closed_at[i] = time.monotonic()
                    selector.unregister(sock)
                    continue
                if sent[i] == len(self._data):
                    selector.modify(sock, selectors.EVENT_READ, i)
        selector.close()

    def wait_closed(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.closed_at) < len(self._socks) and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.closed_at) == len(self._socks)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self._socks:
            sock.close()


def test_stalled_bodies_hold_little_memory_and_are_cut_at_the_read_timeout(
    make_server: Callable[..., KeyturnServer],
) -> None:
    timeout = 3.0
    server = make_server(extra_env={"KEYTURN_READ_TIMEOUT": str(timeout)})
    server.start()
    assert describe_task(server) == "ResourceNotFound"
    baseline = peak = server.rss()

    uploads = StalledUploads(server, 200, MiB)
    try:
        for _ in range(10):  # the first second and a half: everything is sent that will be
            time.sleep(0.15)
            peak = max(peak, server.rss())
        started = time.monotonic()
        code = describe_task(server)
        latency = time.monotonic() - started
        peak = max(peak, server.rss())
        all_closed = uploads.wait_closed(timeout + 5)
        closed = sorted(at - uploads.started for at in uploads.closed_at.values())
    finally:
        uploads.close()

    assert code == "ResourceNotFound"
    assert latency < 1.0, f"another client waited {latency:.2f}s"
    assert peak - baseline < RSS_BOUND, f"RSS grew {(peak - baseline) / 1e6:.0f} MB"
    assert all_closed, f"{200 - len(closed)} stalled connections still open"
    assert closed[0] > timeout - 0.5, f"closed {closed[0]:.2f}s after opening, before the deadline"
    assert not uploads.answered
    assert describe_task(server) == "ResourceNotFound"


def test_dribbled_headers_are_cut_at_the_read_timeout(
    make_server: Callable[..., KeyturnServer],
) -> None:
    timeout = 2.0
    server = make_server(extra_env={"KEYTURN_READ_TIMEOUT": str(timeout)})
    server.start()
    # 80+ bytes at one every 0.5 s: the headers would be complete after 40 s.
    head = f"GET /healthz HTTP/1.1\r\nHost: {server.endpoint}\r\nX-Pad: {'a' * 50}\r\n\r\n"
    sock = socket.create_connection(address(server))
    started = time.monotonic()
    cut_after: float | None = None
    answer = b""
    try:
        sock.settimeout(0.5)
        for byte in head.encode():
            try:
                sock.send(bytes([byte]))
                answer = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                answer = b""
            cut_after = time.monotonic() - started
            break
    finally:
        sock.close()
    assert answer == b""
    assert cut_after is not None, "the headers were completed"
    assert timeout - 0.5 < cut_after < timeout + 2.0, f"cut after {cut_after:.2f}s"
    assert describe_task(server) == "ResourceNotFound"


def test_connections_over_the_limit_are_closed_unanswered_and_cost_nothing(
    make_server: Callable[..., KeyturnServer],
) -> None:
    limit = 20
    server = make_server(
        extra_env={"KEYTURN_MAX_CONNECTIONS": str(limit), "KEYTURN_READ_TIMEOUT": "60"}
    )
    server.start()
    holders = [socket.create_connection(address(server)) for _ in range(limit)]
    for holder in holders:
        holder.sendall(b"GET /healthz HTTP/1.1\r\n")  # unfinished: each keeps its slot
    time.sleep(0.5)
    baseline = peak = server.rss()

    answers: list[bytes] = []
    for _ in range(3):
        extra = [socket.create_connection(address(server)) for _ in range(100)]
        for sock in extra:
            sock.settimeout(5)
            try:
                sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {server.endpoint}\r\n\r\n".encode())
                answers.append(sock.recv(4096))
            except OSError:
                answers.append(b"")
            sock.close()
        peak = max(peak, server.rss())
    assert describe_task(server) == "ClientNetworkError"  # refused too: the server is full

    assert answers == [b""] * 300, [a[:40] for a in answers if a][:3]
    assert peak - baseline < 10 * 1000 * 1000, f"RSS grew {(peak - baseline) / 1e6:.1f} MB"
    for holder in holders:
        holder.close()
    deadline = time.monotonic() + 5
    while (code := describe_task(server)) != "ResourceNotFound" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert code == "ResourceNotFound"


def test_megabyte_key_ids_are_unknown_and_not_retained(
    make_server: Callable[..., KeyturnServer],
) -> None:
    server = make_server()
    server.start()
    assert describe_task(server) == "ResourceNotFound"
    baseline = server.rss()
    codes: set[str] = set()
    sizes: set[int] = set()
    with httpx.Client(base_url=f"http://{server.endpoint}", timeout=30) as client:
        for n in range(50):
            # A new 1 MiB id every time, as TC3's Credential and as legacy SecretId.
            key_id = f"AKID{n:04d}" + "x" * (MiB - 8)
            ts = str(int(time.time()))
            date = time.strftime("%Y-%m-%d", time.gmtime(int(ts)))
            tc3 = client.post(
                "/",
                content=b"{}",
                headers={
                    "Content-Type": "application/json",
                    "X-TC-Action": "DescribeInstances",
                    "X-TC-Version": "2018-04-12",
                    "X-TC-Timestamp": ts,
                    "Authorization": f"TC3-HMAC-SHA256 Credential={key_id}/{date}/redis/"
                    f"tc3_request, SignedHeaders=content-type;host, Signature={'0' * 64}",
                },
            )
            # The legacy signature's parameters in a form body, within its 1 MiB limit.
            form = {
                "Action": "DescribeInstances",
                "Version": "2018-04-12",
                "Region": "ap-guangzhou",
                "Timestamp": ts,
                "Nonce": str(n),
                "Signature": "c2lnbmF0dXJl",
            }
            form["SecretId"] = key_id[: MiB - len(urlencode(form)) - 20]
            legacy = client.post("/", content=urlencode(form), headers=FORM)
            answers = [(tc3.status_code, tc3.content), (legacy.status_code, legacy.content)]
            for status, content in answers:
                assert status == 200
                codes.add(json.loads(content)["Response"]["Error"]["Code"])
                sizes.add(len(content))
    growth = server.rss() - baseline
    assert codes == {"AuthFailure.SecretIdNotFound"}
    assert max(sizes) < 4096  # the answer does not repeat the id
    assert growth < RSS_BOUND, f"RSS grew {growth / 1e6:.0f} MB"
    assert describe_task(server) == "ResourceNotFound"


@pytest.mark.parametrize(
    ("trusted", "source"), [(None, "127.0.0.1"), ("10.9.0.0/16, 127.0.0.1", "203.0.113.7")]
)
def test_forwarded_for_is_believed_only_from_trusted_proxies(
    make_server: Callable[..., KeyturnServer], trusted: str | None, source: str
) -> None:
    # uvicorn's own variable must not widen the trust.
    env = {"FORWARDED_ALLOW_IPS": "*"}
    if trusted is not None:
        env["KEYTURN_TRUSTED_PROXIES"] = trusted
    server = make_server(extra_env=env)
    server.start()
    answer = redis_sdk(server.endpoint).call_json(
        "DescribeInstances", {}, headers={"X-Forwarded-For": "203.0.113.7"}
    )
    request_id = answer["Response"]["RequestId"]
    [record] = [
        r for r in audit_records(server, "tail", "-n", "20") if r["request_id"] == request_id
    ]
    assert record["source_ip"] == source


def test_an_oversized_request_head_gets_a_json_431(
    make_server: Callable[..., KeyturnServer],
) -> None:
    server = make_server()
    server.start()
    response = httpx.post(
        f"http://{server.endpoint}/",
        content=b"{}",
        headers={"X-TC-Action": "DescribeInstances", "X-Pad": "a" * (MAX_HEAD_BYTES + 1)},
        timeout=30,
    )
    assert response.status_code == 431
    assert response.headers["content-type"] == "application/json"
    assert "size limit" in response.json()["error"]
    assert describe_task(server) == "ResourceNotFound"
