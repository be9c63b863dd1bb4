"""Alibaba Cloud RPC protocol edges over raw HTTP against a real keyturn server: a replayed
signed request (same bytes twice, ACS3 and RPC v1) is refused with SignatureNonceUsed, a stale
or malformed timestamp with InvalidTimeStamp.*, and every kind of malformed request carrying
Alibaba's markers (bad auth headers, bad encodings, huge or negative paging, missing
parameters, oversized bodies) gets a 4xx JSON error with a Code — never a 5xx or a traceback."""

from __future__ import annotations

import re
import secrets
import socket
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from keyturn.core.model import Product
from tests.support.alibaba_sdk import acs3_request, rpc_query
from tests.support.keyturn_server import KeyturnServer
from tests.support.passwords import USED_PASSWORDS, leaked
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.engine

UUID_UPPER = re.compile(r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}")


@pytest.fixture
def instance_id(keyturn: KeyturnServer, redis_server: RedisServer) -> str:
    """A registered alibaba-kvstore instance on a real redis-server."""
    instance_id = "r-" + secrets.token_hex(7)
    keyturn.add_instance(instance_id, [redis_server.url()], product=Product.ALIBABA_KVSTORE)
    return instance_id


def post(keyturn: KeyturnServer, query: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"http://{keyturn.endpoint}/?{query}", headers=headers, timeout=10)


def error(response: httpx.Response) -> tuple[str, int]:
    assert response.headers["content-type"] == "application/json;charset=utf-8"
    body = response.json()
    assert UUID_UPPER.fullmatch(body["RequestId"]) and body["Message"]
    assert body["Recommend"].endswith(body["Code"])
    return str(body["Code"]), response.status_code


def test_replayed_and_stale_requests(keyturn: KeyturnServer, instance_id: str) -> None:
    params = {"InstanceId": instance_id}
    query, headers = acs3_request(keyturn.endpoint, "DescribeInstanceAttribute", params)
    assert post(keyturn, query, headers).status_code == 200
    assert error(post(keyturn, query, headers)) == ("SignatureNonceUsed", 400)

    rpc = rpc_query("DescribeInstanceAttribute", params)
    assert post(keyturn, rpc, {}).status_code == 200
    assert error(post(keyturn, rpc, {})) == ("SignatureNonceUsed", 400)

    stale = (datetime.now(UTC) - timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    query, headers = acs3_request(keyturn.endpoint, "DescribeInstanceAttribute", params, date=stale)
    assert error(post(keyturn, query, headers)) == ("InvalidTimeStamp.Expired", 400)
    rpc = rpc_query("DescribeInstanceAttribute", params, timestamp=stale)
    assert error(post(keyturn, rpc, {})) == ("InvalidTimeStamp.Expired", 400)
    rpc = rpc_query("DescribeInstanceAttribute", params, timestamp="yesterday")
    assert error(post(keyturn, rpc, {})) == ("InvalidTimeStamp.Format", 400)


def raw_request(port: int, request: bytes) -> tuple[int, bytes]:
    """Send bytes no HTTP client would (a non-UTF-8 query); (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_garbage_is_refused_with_4xx_json(keyturn: KeyturnServer, instance_id: str) -> None:
    host = keyturn.endpoint
    reset = {"InstanceId": instance_id, "AccountName": "appuser"}
    form = {"x-acs-action": "A", "content-type": "application/x-www-form-urlencoded"}
    rpc_marker = "AccessKeyId=x&Signature=y"
    bad = "InvalidParameter"
    cases: list[tuple[str, dict[str, str], bytes, str]] = [
        ("", {"x-acs-action": "ResetAccountPassword"}, b"", "IncompleteSignature"),
        ("", {"authorization": "ACS3-HMAC-SHA256 nonsense"}, b"", "IncompleteSignature"),
        (
            "",
            {"authorization": "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature=0"},
            b"",
            "IncompleteSignature",
        ),
        (rpc_marker, {}, b"", "MissingParameter"),
        (
            f"{rpc_marker}&Action=A&Version=V&Timestamp=T&SignatureNonce=N",
            {},
            b"",
            "InvalidTimeStamp.Format",
        ),
        (f"{rpc_marker}&%ff%fe=%c3%28", {}, b"", bad),
        (f"{rpc_marker}&InstanceId=a&InstanceId=b", {}, b"", bad),
        (rpc_marker + "".join(f"&p{i}=v" for i in range(300)), {}, b"", bad),
        ("", form, b"AccessKeyId=x&Signature=\xff\xfe", bad),
        (
            rpc_query("ResetAccountPassword", reset).replace("HMAC-SHA1", "HMAC-SHA256"),
            {},
            b"",
            "IncompleteSignature",
        ),
        (rpc_query("ResetAccountPassword", reset), {}, b"", "InvalidAccountPassword.Format"),
        (rpc_query("ResetAccountPassword", {"AccountName": "x"}), {}, b"", "MissingParameter"),
        (rpc_query("NoSuchAction", {}), {}, b"", "InvalidAction.NotFound"),
        (rpc_query("DescribeInstances", {}, version="2099-01-01"), {}, b"", "InvalidVersion"),
        (rpc_query("DescribeInstances", {"PageSize": "-1"}), {}, b"", bad),
        (rpc_query("DescribeInstances", {"PageSize": "9" * 30}), {}, b"", bad),
        (rpc_query("DescribeInstances", {"PageNumber": "0"}), {}, b"", bad),
        (rpc_query("DescribeInstances", {"PageNumber": "²"}), {}, b"", bad),
        (rpc_query("DescribeInstances", {"InstanceIds": ",".join(["r-x"] * 200)}), {}, b"", bad),
        (
            rpc_query("DescribeAccounts", {"InstanceId": "../../etc"}),
            {},
            b"",
            "InvalidInstanceId.NotFound",
        ),
        (rpc_query("CreateAccount", {**reset, "AccountPrivilege": "RoleAdmin"}), {}, b"", bad),
        (rpc_query("CreateAccount", {**reset, "AccountType": "Super"}), {}, b"", bad),
        (rpc_query("ModifyAccountPassword", reset), {}, b"", "MissingParameter"),
    ]
    query, headers = acs3_request(host, "DescribeInstances", {})
    wrong_hash = {**headers, "x-acs-content-sha256": "0" * 64}
    cases.append((query, wrong_hash, b"", "SignatureDoesNotMatch"))
    cases.append((query, headers, b"unexpected body", "SignatureDoesNotMatch"))
    query, headers = acs3_request(host, "DescribeInstances", {"PageSize": "1000"})
    cases.append((query, headers, b"", bad))
    for query, headers, body, expected in cases:
        response = httpx.post(f"http://{host}/?{query}", headers=headers, content=body, timeout=10)
        assert 400 <= response.status_code < 500, (query[:80], response.text)
        assert error(response)[0] == expected, (query[:80], response.text)

    # Raw non-ASCII bytes in the target are refused by the HTTP server before any dialect.
    head = b"POST /?AccessKeyId=x&Signature=y&InstanceId=\xff\xfe HTTP/1.1\r\nHost: h\r\n"
    status, _ = raw_request(keyturn.port, head + b"Connection: close\r\n\r\n")
    assert status == 400
    big = b"x" * (1024 * 1024 + 1)
    response = httpx.post(
        f"http://{host}/?AccessKeyId=x&Signature=y",
        content=big,
        headers={"content-type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert error(response) == ("RequestEntityTooLarge", 413)
    assert "Traceback" not in keyturn.log()


def test_no_secret_leaks(keyturn: KeyturnServer) -> None:
    """Runs last in this module: no password is in the log or the data dir."""
    assert leaked(keyturn, USED_PASSWORDS) == []
