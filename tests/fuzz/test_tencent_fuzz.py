"""Fuzzing the Tencent dialect through the real ASGI app and store: correctly signed requests
carrying arbitrary parameters for every action, and arbitrary unsigned junk, must always get a
documented error code inside an HTTP 200 envelope — never a 5xx and never InternalError."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyturn.dialects.tencent.redis import PRODUCT
from keyturn.dialects.tencent.signing import tc3_signature
from tests.support.fuzz_harness import AppHarness

KEY_ID, SECRET = "AKIDfuzz0000000001", "fuzz-secret-0123456789"
ACTIONS = [*PRODUCT.actions, "NoSuchAction"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
known_names = st.sampled_from(
    [
        "InstanceId",
        "Password",
        "NoAuth",
        "EncryptPassword",
        "TaskId",
        "Limit",
        "Offset",
        "InstanceIds",
        "InstanceName",
    ]
)
params = st.dictionaries(known_names | st.text(max_size=12), json_values, max_size=6)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppHarness]:
    h = AppHarness(tmp_path_factory.mktemp("fuzz"), tenant="1", key_id=KEY_ID, secret=SECRET)
    yield h
    h.close()


def signed_headers(action: str, body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    date = time.strftime("%Y-%m-%d", time.gmtime(int(ts)))
    headers = {"content-type": "application/json", "host": "fuzz"}
    sig = tc3_signature(
        secret_key=SECRET,
        method="POST",
        query="",
        headers=headers,
        signed_headers=("content-type", "host"),
        payload=body,
        timestamp=ts,
        date=date,
        service="redis",
    )
    return {
        "Content-Type": "application/json",
        "X-TC-Action": action,
        "X-TC-Version": "2018-04-12",
        "X-TC-Timestamp": ts,
        "Authorization": f"TC3-HMAC-SHA256 Credential={KEY_ID}/{date}/redis/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={sig}",
    }


def error_code(response: httpx.Response) -> str | None:
    assert response.status_code == 200, response.status_code
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()["Response"]
    assert body["RequestId"]
    error = body.get("Error")
    return None if error is None else str(error["Code"])


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(action=st.sampled_from(ACTIONS), payload=params)
def test_signed_requests_with_arbitrary_parameters(
    harness: AppHarness, action: str, payload: dict[str, Any]
) -> None:
    body = json.dumps(payload).encode()
    code = error_code(harness.send("POST", "/", body=body, headers=signed_headers(action, body)))
    assert code is None or not code.startswith("InternalError"), code


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.binary(max_size=200),
    headers=st.dictionaries(
        st.sampled_from(
            ["Authorization", "X-TC-Action", "X-TC-Timestamp", "X-TC-Version", "Content-Type"]
        ),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
        max_size=5,
    ),
)
def test_unsigned_junk(harness: AppHarness, body: bytes, headers: dict[str, str]) -> None:
    response = harness.send("POST", "/", body=body, headers=headers)
    assert response.status_code < 500
    if response.status_code == 200:
        code = error_code(response)
        assert code is not None and not code.startswith("InternalError"), code
