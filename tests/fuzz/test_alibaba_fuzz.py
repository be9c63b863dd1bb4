"""Fuzzing the Alibaba dialect through the real ASGI app and store: correctly signed requests
(ACS3 and RPC v1) carrying arbitrary parameters for every R-kvstore action, and arbitrary junk
carrying Alibaba's markers, must always get a documented 4xx error code (or a success) in
Alibaba's JSON envelope — never a 5xx and never InternalError."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from keyturn.core.model import Product
from keyturn.dialects.alibaba.kvstore import PRODUCT
from tests.support.alibaba_sdk import acs3_request, rpc_query
from tests.support.fuzz_harness import AppHarness, FuzzInstance

KEY_ID, SECRET = "LTAIfuzz0000000001", "fuzz-secret-0123456789"
#: Registered on a port nothing listens on: actions reach the engine layer and fail there.
INSTANCE = "r-fuzz0000000001"
ACTIONS = [*PRODUCT.actions, "NoSuchAction"]
#: RPC common parameters: the signer sets them, so a payload must not override them.
RPC_COMMON = frozenset(
    {
        "Action",
        "Version",
        "Format",
        "Timestamp",
        "SignatureNonce",
        "SignatureMethod",
        "SignatureVersion",
        "AccessKeyId",
        "Signature",
    }
)

text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40)
values = (
    st.sampled_from([INSTANCE, "r-bp1zxszhcgatnx", "appuser", "default", "-1", "0", "101"])
    | st.integers().map(str)
    | text
)
passwords = st.sampled_from(["Kt-Fuzz-Passw0rd", "short", ""]) | text
#: Mostly well-formed calls, so that actions get past parameter checks to the services.
known = st.fixed_dictionaries(
    {"InstanceId": st.sampled_from([INSTANCE]) | values},
    optional={
        "AccountName": st.sampled_from(["appuser", INSTANCE, "Bad-Name"]) | values,
        "AccountPassword": passwords,
        "OldAccountPassword": passwords,
        "NewAccountPassword": passwords,
        "AccountPrivilege": st.sampled_from(["RoleReadOnly", "RoleReadWrite"]) | values,
        "AccountType": st.sampled_from(["Normal", "Super"]),
        "InstanceIds": st.lists(values, max_size=3).map(",".join),
        "PageNumber": values,
        "PageSize": values,
        "SearchAccountName": values,
    },
)
payloads = st.builds(
    lambda extra, base: {**extra, **base}, st.dictionaries(text, values, max_size=3), known
)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppHarness]:
    h = AppHarness(
        tmp_path_factory.mktemp("fuzz"),
        tenant="1",
        key_id=KEY_ID,
        secret=SECRET,
        instances=[
            FuzzInstance(
                INSTANCE, Product.ALIBABA_KVSTORE, "cn-hangzhou", "redis://default:pw@127.0.0.1:1"
            )
        ],
        env={"KEYTURN_ENGINE_TIMEOUT": "0.5"},
    )
    yield h
    h.close()


def error_code(response: httpx.Response) -> str | None:
    """The error's Code (None for a success); fails on a 5xx or a malformed envelope."""
    assert response.status_code < 500, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json;charset=utf-8"
    body: dict[str, Any] = response.json()
    assert body["RequestId"]
    if response.status_code == 200:
        assert "Code" not in body
        return None
    assert response.status_code >= 400 and body["Message"]
    return str(body["Code"])


@settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    action=st.sampled_from(ACTIONS),
    payload=payloads,
    acs3=st.booleans(),
)
def test_signed_requests_with_arbitrary_parameters(
    harness: AppHarness, action: str, payload: dict[str, str], acs3: bool
) -> None:
    payload = {k: v for k, v in payload.items() if k not in RPC_COMMON}
    if acs3:
        query, headers = acs3_request("fuzz", action, payload, key_id=KEY_ID, secret=SECRET)
    else:
        query, headers = rpc_query(action, payload, key_id=KEY_ID, secret=SECRET), {}
    code = error_code(harness.send("POST", "/", query=query, headers=headers))
    event(f"code={code}")
    assert code != "InternalError"
    # A correctly signed request is never refused for its signature.
    assert code not in ("SignatureDoesNotMatch", "IncompleteSignature"), code


header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    marker=st.sampled_from(["acs3", "action", "rpc"]),
    authorization=st.sampled_from(["ACS3-HMAC-SHA256 ", "ACS3-", "ACS3-HMAC-SM3 "]).flatmap(
        lambda prefix: header_values.map(lambda rest: prefix + rest)
    ),
    headers=st.dictionaries(
        st.sampled_from(
            [
                "x-acs-action",
                "x-acs-version",
                "x-acs-date",
                "x-acs-signature-nonce",
                "x-acs-content-sha256",
                "content-type",
            ]
        ),
        header_values,
        max_size=6,
    ),
    query=st.text(alphabet="AKSaik=&%+0123456789abcdefxyzé-._~", max_size=120),
    body=st.binary(max_size=200),
)
def test_unsigned_junk(
    harness: AppHarness,
    marker: str,
    authorization: str,
    headers: dict[str, str],
    query: str,
    body: bytes,
) -> None:
    if marker == "acs3":
        headers = {**headers, "authorization": authorization}
    elif marker == "action":
        headers = {**headers, "x-acs-action": headers.get("x-acs-action", "") or "A"}
    else:
        query = "AccessKeyId=" + query + "&Signature=x"
    code = error_code(harness.send("POST", "/", query=query, body=body, headers=headers))
    assert code is not None and code != "InternalError", code
