"""Crafted input for every dialect and product, signed and unsigned, through the real app and
store (issue 11's fuzz run): arbitrary flattened parameter names (``A.N.B`` with list indices of
any size or script, empty and deep segments), numbers as text (Unicode digits such as ``²``,
thousands of digits, signs, exponents) and as JSON (huge integers, floats), and lengths. Every
answer must be a documented vendor code below 500, never ``InternalError``, and nothing may be
logged at ERROR (an unhandled exception is logged there with its traceback)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyturn.core.model import Product
from keyturn.dialects.alibaba.kvstore import PRODUCT as KVSTORE
from keyturn.dialects.tencent.postgres import PRODUCT as POSTGRES
from keyturn.dialects.tencent.redis import PRODUCT as REDIS
from keyturn.dialects.tencent.tdmysql import PRODUCT as TDMYSQL
from tests.support.alibaba_sdk import rpc_query
from tests.support.fuzz_harness import AppHarness, FuzzInstance
from tests.support.huawei_sdk import sdk_signed
from tests.support.tencent_raw import legacy_signed, tc3_headers

TENANT, KEY_ID, SECRET = "1300000009", "AKIDcrafted00000001", "crafted-secret-0123456789"
HOST = "fuzz"
UNREACHABLE = "127.0.0.1:1"
INSTANCES = [
    FuzzInstance(
        "crs-crafted01", Product.TENCENT_REDIS, "ap-guangzhou", f"redis://default:p@{UNREACHABLE}"
    ),
    FuzzInstance(
        "postgres-crafted01",
        Product.TENCENT_POSTGRES,
        "ap-guangzhou",
        f"postgresql://postgres:p@{UNREACHABLE}/postgres",
    ),
    FuzzInstance(
        "tdsql-crafted01", Product.TENCENT_TDMYSQL, "ap-guangzhou", f"mysql://root:p@{UNREACHABLE}"
    ),
    FuzzInstance(
        "r-crafted0000001",
        Product.ALIBABA_KVSTORE,
        "cn-hangzhou",
        f"redis://default:p@{UNREACHABLE}",
    ),
    FuzzInstance(
        "6d1d7a5c-1111-2222-3333-444455556666",
        Product.HUAWEI_DCS,
        "cn-north-4",
        f"redis://default:p@{UNREACHABLE}",
    ),
]
TENCENT = [
    (p.service, p.version, action) for p in (REDIS, POSTGRES, TDMYSQL) for action in p.actions
]
INTERNAL = ("InternalError", "111500000")

digits = st.sampled_from(
    [
        "0",
        "1",
        "7",
        "999",
        "1000",
        "99999999",
        "²",
        "١٢٣",
        "𝟙",
        "1" * 5000,
        "-1",
        "+3",
        "1e9",
        " 5",
        "",
    ]
)
numbers = digits | st.integers(min_value=-(10**30), max_value=10**30).map(str)
segments = (
    st.sampled_from(["Users", "UserName", "Host", "Password", "InstanceIds", "Filters", "Values"])
    | digits
)
names = st.lists(segments, min_size=1, max_size=9).map(".".join)
values = numbers | st.text(max_size=30)
flat = st.dictionaries(names, values, max_size=8)
json_numbers = (
    st.integers(min_value=-(10**60), max_value=10**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([10**4000, -(10**4000)])
)
json_values = st.recursive(
    st.none() | st.booleans() | json_numbers | values,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(segments, inner, max_size=4),
    max_leaves=12,
)
json_params = st.dictionaries(
    st.sampled_from(
        ["InstanceId", "TaskId", "Limit", "Offset", "Users", "UserName", "FlowId", "Filters"]
    )
    | segments,
    json_values,
    max_size=5,
)
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppHarness]:
    h = AppHarness(
        tmp_path_factory.mktemp("crafted"),
        tenant=TENANT,
        key_id=KEY_ID,
        secret=SECRET,
        instances=INSTANCES,
        env={"KEYTURN_ENGINE_TIMEOUT": "0.3", "KEYTURN_RATE_LIMITS": "*=1000000"},
    )
    yield h
    h.close()


@pytest.fixture(autouse=True)
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.ERROR, logger="keyturn")
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def check(response: httpx.Response) -> None:
    assert response.status_code < 500 or response.status_code == 503, response.text[:300]
    assert not any(code.encode() in response.content for code in INTERNAL), response.text[:300]


@SETTINGS
@given(
    target=st.sampled_from(TENCENT),
    params=flat,
    method=st.sampled_from(["GET", "POST"]),
    signed=st.booleans(),
)
def test_tencent_legacy_flattened_names_and_numbers(
    harness: AppHarness,
    target: tuple[str, str, str],
    params: dict[str, str],
    method: str,
    signed: bool,
) -> None:
    _, version, action = target
    encoded = legacy_signed(
        HOST,
        action,
        params,
        method=method,
        version=version,
        key_id=KEY_ID if signed else "AKIDunknown",
        secret=SECRET,
    )
    if method == "GET":
        response = harness.send("GET", "/", query=encoded, headers={"host": HOST})
    else:
        headers = {"host": HOST, "content-type": "application/x-www-form-urlencoded"}
        response = harness.send("POST", "/", body=encoded.encode(), headers=headers)
    check(response)


@SETTINGS
@given(
    target=st.sampled_from(TENCENT),
    params=json_params,
    timestamp=st.none() | digits,
    signed=st.booleans(),
)
def test_tencent_tc3_json_numbers(
    harness: AppHarness,
    target: tuple[str, str, str],
    params: dict[str, Any],
    timestamp: str | None,
    signed: bool,
) -> None:
    service, version, action = target
    try:
        body = json.dumps(params).encode()
    except ValueError:  # an integer beyond Python's own str() limit: send it as text
        body = repr(params).encode()
    headers = tc3_headers(
        HOST,
        action,
        body,
        service=service,
        version=version,
        key_id=KEY_ID,
        secret=SECRET if signed else "wrong-secret",
        timestamp=timestamp,
    )
    check(harness.send("POST", "/", body=body, headers=headers))


@SETTINGS
@given(action=st.sampled_from([*KVSTORE.actions, "Nope"]), params=flat, signed=st.booleans())
def test_alibaba_names_and_numbers(
    harness: AppHarness, action: str, params: dict[str, str], signed: bool
) -> None:
    params = {"InstanceId": "r-crafted0000001", **params}
    query = rpc_query(action, params, key_id=KEY_ID, secret=SECRET if signed else "wrong")
    check(harness.send("POST", "/", query=query, headers={"host": HOST}))


HUAWEI_PATHS = [
    ("GET", "/v2/{p}/instances"),
    ("GET", "/v2/{p}/instances/{i}"),
    ("GET", "/v2/{p}/jobs/{n}"),
    ("POST", "/v2/{p}/instances/{i}/password/reset"),
    ("PUT", "/v2/{p}/instances/{i}/password"),
]


@SETTINGS
@given(
    route=st.sampled_from(HUAWEI_PATHS),
    number=digits,
    query=st.lists(
        st.tuples(st.sampled_from(["offset", "limit", "name", "ip"]) | segments, numbers),
        max_size=4,
    ),
    body=st.dictionaries(
        st.sampled_from(["new_password", "old_password", "no_password_access"]) | segments,
        json_values,
        max_size=3,
    ),
    signed=st.booleans(),
)
def test_huawei_numbers_in_paths_queries_and_bodies(
    harness: AppHarness,
    route: tuple[str, str],
    number: str,
    query: list[tuple[str, str]],
    body: dict[str, Any],
    signed: bool,
) -> None:
    method, template = route
    segment = "".join(c for c in number if c.isascii() and c.isalnum()) or "0"
    path = template.format(p=TENANT, i=INSTANCES[-1].id, n=segment)
    try:
        payload = json.dumps(body).encode() if method != "GET" else b""
    except ValueError:
        payload = b"{}"
    url, headers = sdk_signed(
        HOST,
        method,
        path,
        query=[(k, v) for k, v in query],
        body=payload,
        ak=KEY_ID,
        sk=SECRET if signed else "wrong",
        project=TENANT,
    )
    target = url.removeprefix(f"http://{HOST}")
    path_part, _, query_part = target.partition("?")
    check(harness.send(method, path_part, query=query_part, body=payload, headers=headers))
