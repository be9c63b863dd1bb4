"""Fuzzing the secret-manager dialects (Tencent SSM, Alibaba KMS) through the real ASGI app and
store: correctly signed calls of every action with crafted parameters (names, JSON
configurations, intervals, flow ids, pages), some on registered instances whose engines are
unreachable, must always get a documented error (or a success) in the vendor's envelope: never
a 5xx, never an internal error, never a traceback in the answer."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from keyturn.core.model import Product
from keyturn.dialects.alibaba.kms import PRODUCT as KMS
from keyturn.dialects.tencent.ssm import PRODUCT as SSM
from tests.support.alibaba_sdk import acs3_request
from tests.support.fuzz_harness import AppHarness, FuzzInstance
from tests.support.tencent_raw import tc3_headers, tencent_error

KEY_ID, SECRET = "AKIDfuzzsecrets00001", "fuzz-secret-0123456789"
REDIS, PG, KVSTORE = "crs-fuzz0001", "postgres-fuzz0001", "r-fuzz0000000001"
DEAD = "127.0.0.1:1"

text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40)
names = st.sampled_from(["orders", "orders-redis", "acs/x", "-x", "a" * 200, ""]) | text
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
ssm_params = st.fixed_dictionaries(
    {"SecretName": names | json_values},
    optional={
        "ProductName": st.sampled_from(["Redis", "PostgreSQL", "Mysql", "Cvm"]) | json_values,
        "InstanceID": st.sampled_from([REDIS, PG, "crs-none"]) | json_values,
        "UserNamePrefix": st.sampled_from(["app", "9x", "toolongname"]) | json_values,
        "Domains": st.lists(st.sampled_from(["%", "10.0.0.%", "x'y"]) | text, max_size=3),
        "EnableRotation": st.booleans() | json_values,
        "RotationFrequency": st.integers(-5, 400) | json_values,
        "Frequency": st.integers(-5, 400) | json_values,
        "RotationBeginTime": st.sampled_from(["2030-01-01 02:00:00", "02:00"]) | text,
        "VersionId": st.sampled_from(["SSM_Current", "SSM_Previous", "v-x"]) | json_values,
        "FlowID": st.integers(-(2**130), 2**130) | json_values,
        "Offset": st.integers(-1, 2**40) | json_values,
        "Limit": st.integers(-1, 5000) | json_values,
        "SearchSecretName": text,
        "Tags": st.lists(
            st.fixed_dictionaries(
                {
                    "TagKey": st.sampled_from(["keyturn:overlap", "env"]) | json_values,
                    "TagValue": st.sampled_from(["10m", "31d", "0s", "x"]) | json_values,
                }
            )
            | json_values,
            max_size=3,
        )
        | json_values,
        "Description": text,
    },
)
configs = st.fixed_dictionaries(
    {},
    optional={
        "InstanceId": st.sampled_from([KVSTORE, REDIS]) | json_values,
        "DBInstanceId": st.sampled_from([PG, "pg-none"]) | json_values,
        "SecretSubType": st.sampled_from(["SingleUser", "DoubleUsers", "x"]) | json_values,
        "CustomData": st.fixed_dictionaries(
            {"Overlap": st.sampled_from(["10m", "31d", "0s", "1x"]) | json_values}
        )
        | json_values,
    },
).map(json.dumps)
kms_values = (
    st.sampled_from(["true", "false", "7d", "6h", "0s", "99999999999d", "ACSPrevious", "1"])
    | st.integers().map(str)
    | text
)
kms_params = st.fixed_dictionaries(
    {"SecretName": names},
    optional={
        "SecretType": st.sampled_from(["Rds", "Redis", "Generic"]) | text,
        "VersionId": st.sampled_from(["v1", "a b"]) | text,
        "ExtendedConfig": configs | text,
        "SecretData": st.sampled_from(['{"AccountName":"app"}', '{"Accounts":[]}', "[]"])
        | json_values.map(json.dumps),
        "EnableAutomaticRotation": kms_values,
        "RotationInterval": kms_values,
        "VersionStage": st.sampled_from(["ACSCurrent", "ACSPrevious", "x"]) | text,
        "FetchExtendedConfig": kms_values,
        "PageNumber": kms_values,
        "PageSize": kms_values,
        "IncludeDeprecated": kms_values,
    },
)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppHarness]:
    h = AppHarness(
        tmp_path_factory.mktemp("fuzz"),
        tenant="1300000001",
        key_id=KEY_ID,
        secret=SECRET,
        instances=[
            FuzzInstance(REDIS, Product.TENCENT_REDIS, "ap-guangzhou", f"redis://a:b@{DEAD}"),
            FuzzInstance(PG, Product.TENCENT_POSTGRES, "ap-guangzhou", f"postgresql://a:b@{DEAD}"),
            FuzzInstance(KVSTORE, Product.ALIBABA_KVSTORE, "cn-hangzhou", f"redis://a:b@{DEAD}"),
        ],
        env={"KEYTURN_ENGINE_TIMEOUT": "0.5", "KEYTURN_RATE_LIMITS": "*=100000"},
    )
    yield h
    h.close()


def _no_leak(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    assert "Traceback" not in response.text


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(action=st.sampled_from([*SSM.actions, "NoSuchAction"]), payload=ssm_params)
def test_ssm_signed_calls_with_crafted_parameters(
    harness: AppHarness, action: str, payload: dict[str, Any]
) -> None:
    # TC3 signs whole seconds: an unknown field keeps a repeated example from being a replay.
    body = json.dumps({**payload, "FuzzNonce": uuid.uuid4().hex}).encode()
    headers = tc3_headers(
        "fuzz", action, body, key_id=KEY_ID, secret=SECRET, service="ssm", version=SSM.version
    )
    response = harness.send("POST", "/", body=body, headers=headers)
    _no_leak(response)
    code = tencent_error(response)
    event(f"code={code}")
    assert code is None or not code.startswith("InternalError"), code
    assert code is None or not code.startswith("AuthFailure"), code


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(action=st.sampled_from([*KMS.actions, "NoSuchAction"]), payload=kms_params)
def test_kms_signed_calls_with_crafted_parameters(
    harness: AppHarness, action: str, payload: dict[str, str]
) -> None:
    query, headers = acs3_request(
        "fuzz", action, payload, key_id=KEY_ID, secret=SECRET, version=KMS.version
    )
    response = harness.send("POST", "/", query=query, headers=headers)
    _no_leak(response)
    body: dict[str, Any] = response.json()
    code = body.get("Code") if response.status_code != 200 else None
    event(f"code={code}")
    assert code not in ("InternalError", "SignatureDoesNotMatch", "IncompleteSignature"), code
