"""Fuzzing the Tencent dialect through the real ASGI app and store: correctly signed requests
carrying arbitrary parameters for every action, and arbitrary unsigned junk, must always get a
documented error code inside an HTTP 200 envelope — never a 5xx and never InternalError."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyturn.dialects.tencent.redis import PRODUCT
from tests.support.fuzz_harness import AppHarness
from tests.support.tencent_raw import tc3_headers, tencent_error

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


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(action=st.sampled_from(ACTIONS), payload=params)
def test_signed_requests_with_arbitrary_parameters(
    harness: AppHarness, action: str, payload: dict[str, Any]
) -> None:
    body = json.dumps(payload).encode()
    code = tencent_error(
        harness.send(
            "POST",
            "/",
            body=body,
            headers=tc3_headers("fuzz", action, body, key_id=KEY_ID, secret=SECRET),
        )
    )
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
        code = tencent_error(response)
        assert code is not None and not code.startswith("InternalError"), code
