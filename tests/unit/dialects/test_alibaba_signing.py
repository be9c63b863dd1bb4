"""Alibaba ACS3-HMAC-SHA256 and RPC HMAC-SHA1 signatures, checked against requests captured
from the official SDKs (fake credentials LTAIEXAMPLE / secret: the Tea SDK by default, with STS,
with ``signature_algorithm='v2'``, and the legacy aliyun-python-sdk-core) and against the SDKs'
own signers for arbitrary parameter values; plus the clock-window rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alibabacloud_tea_openapi.utils import Utils, get_canonical_query_string
from hypothesis import given
from hypothesis import strategies as st

from keyturn.core.errors import (
    MissingAuthorization,
    SignatureExpired,
    SignatureInvalid,
    TimestampMalformed,
)
from keyturn.dialects._wire import WireRequest
from keyturn.dialects.alibaba.envelope import parse_call
from keyturn.dialects.alibaba.signing import (
    canonical_query,
    check_timestamp,
    parse_acs3_authorization,
    rpc_signature,
    rpc_string_to_sign,
    verify_acs3,
    verify_rpc,
)

SECRET = "secret"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
TEA_UA = "AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2"
SIGNED = (
    "accept;host;user-agent;x-acs-action;x-acs-content-sha256;x-acs-credentials-provider;"
    "x-acs-date;x-acs-signature-nonce;x-acs-version"
)
RESET_QUERY = "AccountName=appuser&AccountPassword=Passw0rd%212024&InstanceId=r-bp1abcdefg"

#: Tea SDK 7.0.0, default ACS3 signing (sdk-wire capture 0).
ACS3_HEADERS = {
    "accept-encoding": "identity",
    "host": "127.0.0.1:45199",
    "x-acs-version": "2015-01-01",
    "x-acs-action": "ResetAccountPassword",
    "user-agent": TEA_UA,
    "x-acs-date": "2026-11-22T11:14:43Z",
    "x-acs-signature-nonce": "f9f63b4b5a76794dcf533806e82ba647",
    "accept": "application/json",
    "x-acs-content-sha256": EMPTY_SHA256,
    "x-acs-credentials-provider": "static_ak",
    "authorization": f"ACS3-HMAC-SHA256 Credential=LTAIEXAMPLE,SignedHeaders={SIGNED},"
    "Signature=4bb5579d00f65e06616d3f8958977987c5d92f0787befc753b83aa92079b54a2",
    "content-length": "0",
}
#: The same with an STS token (capture 8): two more signed headers.
STS_HEADERS = {
    **ACS3_HEADERS,
    "x-acs-date": "2026-11-22T11:14:44Z",
    "x-acs-signature-nonce": "6ad96dfab7c8a99e5d11600b92aa4455",
    "x-acs-credentials-provider": "static_sts",
    "x-acs-accesskey-id": "LTAIEXAMPLE",
    "x-acs-security-token": "STSTOKENEXAMPLE",
    "authorization": "ACS3-HMAC-SHA256 Credential=LTAIEXAMPLE,SignedHeaders=accept;host;"
    "user-agent;x-acs-accesskey-id;x-acs-action;x-acs-content-sha256;"
    "x-acs-credentials-provider;x-acs-date;x-acs-security-token;x-acs-signature-nonce;"
    "x-acs-version,Signature=0dc4f9760ada27356252993b9974dc7b8d1ef240c4d33cbca8b815972cb8c60d",
}
#: Tea SDK with Config(signature_algorithm='v2') (capture 9): RPC v1, Format=json.
TEA_V2_QUERY = (
    "Action=ResetAccountPassword&Format=json&Version=2015-01-01&Timestamp=2026-11-22T11%3A14%3A44Z"
    "&SignatureNonce=6a8ce3e196a573cdd7d04638041efa65&AccountName=appuser"
    "&AccountPassword=Passw0rd%212024&InstanceId=r-bp1abcdefg&SignatureMethod=HMAC-SHA1"
    "&SignatureVersion=1.0&AccessKeyId=LTAIEXAMPLE&Signature=VYQA75udC9CKXFjAT94DtsyfA7I%3D"
)
TEA_V2_STRING_TO_SIGN = (
    "POST&%2F&AccessKeyId%3DLTAIEXAMPLE%26AccountName%3Dappuser%26AccountPassword%3DPassw0rd"
    "%25212024%26Action%3DResetAccountPassword%26Format%3Djson%26InstanceId%3Dr-bp1abcdefg"
    "%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D6a8ce3e196a573cdd7d04638041efa65"
    "%26SignatureVersion%3D1.0%26Timestamp%3D2026-11-22T11%253A14%253A44Z%26Version%3D2015-01-01"
)
#: Legacy aliyun-python-sdk-core 2.16.1 (captures 12 and 21): Format=JSON, RegionId, an empty
#: but signed SignatureType.
LEGACY_RESET_QUERY = (
    "InstanceId=r-bp1abcdefg&AccountName=appuser&AccountPassword=Passw0rd%212024"
    "&Version=2015-01-01&Action=ResetAccountPassword&Format=JSON&RegionId=cn-hangzhou"
    "&Timestamp=2026-11-22T11%3A14%3A44Z&SignatureMethod=HMAC-SHA1&SignatureType="
    "&SignatureVersion=1.0&SignatureNonce=e6393f7bf80b44604c70292204f393df"
    "&AccessKeyId=LTAIEXAMPLE&Signature=qLaH0DTlAJPY04raeCQCifOr020%3D"
)
LEGACY_DESCRIBE_QUERY = (
    "InstanceId=r-bp1abcdefg&Version=2015-01-01&Action=DescribeAccounts&Format=JSON"
    "&RegionId=cn-hangzhou&Timestamp=2026-11-22T11%3A14%3A45Z&SignatureMethod=HMAC-SHA1"
    "&SignatureType=&SignatureVersion=1.0&SignatureNonce=2f71aa2dd215da55c97ea3f2f83b239a"
    "&AccessKeyId=LTAIEXAMPLE&Signature=LtCzhEICImh%2B8HxBWb4xQXt%2BTWU%3D"
)
RPC_HEADERS = {"host": "127.0.0.1:45199", "x-acs-action": "ResetAccountPassword"}


def wire(query: str, headers: dict[str, str], body: bytes = b"") -> WireRequest:
    return WireRequest(method="POST", path="/", query=query, headers=headers, body=body)


def check_acs3(request: WireRequest, secret: str = SECRET) -> None:
    call = parse_call(request)
    assert call.acs3 is not None
    verify_acs3(auth=call.acs3, secret=secret, request=request, query=call.query)


def check_rpc(request: WireRequest, secret: str = SECRET) -> None:
    call = parse_call(request)
    verify_rpc(secret=secret, method=request.method, params=call.params, signature=call.signature)


@pytest.mark.parametrize("headers", [ACS3_HEADERS, STS_HEADERS], ids=["static", "sts"])
def test_captured_acs3_requests_verify(headers: dict[str, str]) -> None:
    request = wire(RESET_QUERY, headers)
    call = parse_call(request)
    assert (call.action, call.version, call.access_key_id) == (
        "ResetAccountPassword",
        "2015-01-01",
        "LTAIEXAMPLE",
    )
    assert call.nonce == headers["x-acs-signature-nonce"]
    assert call.params["AccountPassword"] == "Passw0rd!2024"
    check_acs3(request)


@pytest.mark.parametrize(
    "change",
    [
        {"secret": "Secret"},
        {"query": RESET_QUERY.replace("appuser", "appusers")},
        {"headers": {**ACS3_HEADERS, "host": "127.0.0.1:45198"}},
        {"headers": {**ACS3_HEADERS, "x-acs-action": "CreateAccount"}},
        {"headers": {**ACS3_HEADERS, "x-acs-date": "2026-11-22T11:14:44Z"}},
        {"method": "GET"},
    ],
    ids=["secret", "query", "host", "action", "date", "method"],
)
def test_any_change_breaks_an_acs3_signature(change: dict[str, Any]) -> None:
    request = WireRequest(
        method=change.get("method", "POST"),
        path="/",
        query=change.get("query", RESET_QUERY),
        headers=change.get("headers", ACS3_HEADERS),
    )
    with pytest.raises(SignatureInvalid):
        check_acs3(request, change.get("secret", SECRET))


def test_acs3_body_must_match_its_declared_hash() -> None:
    with pytest.raises(SignatureInvalid):
        check_acs3(wire(RESET_QUERY, ACS3_HEADERS, body=b"AccountName=other"))


@pytest.mark.parametrize(
    "authorization",
    [
        "ACS3-HMAC-SHA256 Credential=LTAIEXAMPLE",
        "ACS3-HMAC-SM3 Credential=AK,SignedHeaders=host,Signature=" + "0" * 64,
        "ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=HOST,Signature=" + "0" * 64,
        "ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=host;x-acs-action,Signature=" + "0" * 64,
        "ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=" + SIGNED + ",Signature=xyz",
    ],
)
def test_malformed_or_incomplete_acs3_authorization(authorization: str) -> None:
    with pytest.raises(MissingAuthorization):
        parse_acs3_authorization(authorization)


def test_required_signed_headers_are_named() -> None:
    unsigned_date = SIGNED.replace("x-acs-date;", "")
    with pytest.raises(MissingAuthorization, match="x-acs-date"):
        parse_acs3_authorization(
            f"ACS3-HMAC-SHA256 Credential=AK,SignedHeaders={unsigned_date},Signature=" + "a" * 64
        )


@pytest.mark.parametrize("query", [TEA_V2_QUERY, LEGACY_RESET_QUERY, LEGACY_DESCRIBE_QUERY])
def test_captured_rpc_requests_verify(query: str) -> None:
    request = wire(query, RPC_HEADERS)
    call = parse_call(request)
    assert call.acs3 is None and call.access_key_id == "LTAIEXAMPLE"
    assert "Signature" not in call.params
    check_rpc(request)


def test_rpc_string_to_sign_is_the_sdks() -> None:
    call = parse_call(wire(TEA_V2_QUERY, RPC_HEADERS))
    assert rpc_string_to_sign("POST", call.params) == TEA_V2_STRING_TO_SIGN


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("InstanceId=r-bp1abcdefg", "InstanceId=r-bp1abcdefh"),
        ("SignatureType=&", ""),  # the empty SignatureType is signed input too
        ("Format=JSON", "Format=json"),
    ],
)
def test_any_change_breaks_an_rpc_signature(old: str, new: str) -> None:
    with pytest.raises(SignatureInvalid):
        check_rpc(wire(LEGACY_RESET_QUERY.replace(old, new), RPC_HEADERS))
    with pytest.raises(SignatureInvalid):
        check_rpc(wire(LEGACY_RESET_QUERY, RPC_HEADERS), secret="other")


@pytest.mark.parametrize(
    ("old", "new"),
    [("SignatureMethod=HMAC-SHA1", "SignatureMethod=HMAC-SHA256"), ("Version=1.0", "Version=2.0")],
)
def test_only_hmac_sha1_version_1_is_accepted(old: str, new: str) -> None:
    with pytest.raises(MissingAuthorization):
        check_rpc(wire(LEGACY_RESET_QUERY.replace(old, new), RPC_HEADERS))


values = st.text(max_size=30)
names = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._", min_size=1
)


@given(params=st.dictionaries(names, values, max_size=6))
def test_canonical_query_equals_the_tea_sdks(params: dict[str, str]) -> None:
    assert canonical_query(params.items()) == get_canonical_query_string(params)


@given(
    params=st.dictionaries(names.filter(lambda n: n != "Signature"), values, max_size=6),
    method=st.sampled_from(["POST", "GET"]),
)
def test_rpc_signature_equals_the_tea_sdks(params: dict[str, str], method: str) -> None:
    # `Signature` itself is never signed: the server leaves it out, the SDK adds it later.
    expected = Utils.get_rpcsignature(params, method, SECRET)
    assert rpc_signature(secret=SECRET, method=method, params=params) == expected


NOW = datetime(2026, 11, 22, 11, 14, 43, tzinfo=UTC)


def test_timestamps_inside_the_window_pass() -> None:
    for delta in (0, 899, -899):
        moment = NOW + timedelta(seconds=delta)
        check_timestamp(moment.strftime("%Y-%m-%dT%H:%M:%SZ"), NOW, 900)


@pytest.mark.parametrize("delta", [901, -901, 86400 * 365])
def test_timestamps_outside_the_window_expire(delta: int) -> None:
    moment = NOW + timedelta(seconds=delta)
    with pytest.raises(SignatureExpired):
        check_timestamp(moment.strftime("%Y-%m-%dT%H:%M:%SZ"), NOW, 900)


@pytest.mark.parametrize(
    "value",
    ["", "1795346083", "2026-11-22 11:14:43", "2026-13-22T11:14:43Z", "2026-11-22T11:14:43Z\n"],
)
def test_malformed_timestamps(value: str) -> None:
    with pytest.raises(TimestampMalformed):
        check_timestamp(value, NOW, 900)
