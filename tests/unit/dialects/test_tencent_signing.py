"""TC3 and legacy signatures, checked against requests captured from the official SDK
(fake credentials AKIDEXAMPLE / secret) and against the SDK's own signer."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from keyturn.core.errors import MissingAuthorization, SignatureInvalid
from keyturn.dialects._wire import WireRequest
from keyturn.dialects.tencent.signing import (
    legacy_signature,
    parse_tc3_authorization,
    tc3_signature,
    verify_legacy,
    verify_tc3,
)

CAPTURED_AUTH = (
    "TC3-HMAC-SHA256 Credential=AKIDEXAMPLE/2026-11-22/redis/tc3_request, "
    "SignedHeaders=content-type;host, "
    "Signature=f6cb4831dfa985882583a04a6bf07da19d3e2d0b00fcc5c26f13e163ae1d8454"
)
CAPTURED_BODY = b'{"InstanceId": "crs-abc12345", "Password": "Passw0rd!2024", "NoAuth": false}'
HEADERS = {"content-type": "application/json", "host": "127.0.0.1:38297"}
CAPTURED = WireRequest(method="POST", path="/", query="", headers=HEADERS, body=CAPTURED_BODY)


def test_captured_tc3_post_verifies() -> None:
    auth = parse_tc3_authorization(CAPTURED_AUTH)
    assert (auth.secret_id, auth.service, auth.date) == ("AKIDEXAMPLE", "redis", "2026-11-22")
    verify_tc3(auth=auth, secret_key="secret", request=CAPTURED, timestamp="1795346081")


@pytest.mark.parametrize(
    ("request_change", "secret_key", "timestamp"),
    [
        ({"body": CAPTURED_BODY.replace(b"false", b"true")}, "secret", "1795346081"),
        ({}, "Secret", "1795346081"),
        ({}, "secret", "1795346082"),
        ({"headers": {**HEADERS, "host": "127.0.0.1:38298"}}, "secret", "1795346081"),
    ],
)
def test_any_change_breaks_the_signature(
    request_change: dict[str, Any], secret_key: str, timestamp: str
) -> None:
    with pytest.raises(SignatureInvalid):
        verify_tc3(
            auth=parse_tc3_authorization(CAPTURED_AUTH),
            secret_key=secret_key,
            request=replace(CAPTURED, **request_change),
            timestamp=timestamp,
        )


def test_captured_tc3_get_verifies() -> None:
    auth = parse_tc3_authorization(
        "TC3-HMAC-SHA256 Credential=AKIDEXAMPLE/2026-11-22/redis/tc3_request, "
        "SignedHeaders=content-type;host, "
        "Signature=31c3566b8ec1780854a191d1e1edaf2238af682fad9195ff65df789a3c01aca8"
    )
    get = WireRequest(
        method="GET",
        path="/",
        query="InstanceId=crs-abc12345&Password=Passw0rd%212024&NoAuth=False",
        headers={"content-type": "application/x-www-form-urlencoded", "host": "127.0.0.1:38297"},
    )
    verify_tc3(auth=auth, secret_key="secret", request=get, timestamp="1795346081")


def test_tccli_host_with_scheme_is_signed_verbatim() -> None:
    headers = {"content-type": "application/json", "host": "http://127.0.0.1:51041"}
    sig = tc3_signature(
        secret_key="s",
        method="POST",
        query="",
        headers=headers,
        signed_headers=("content-type", "host"),
        payload=b"{}",
        timestamp="1",
        date="1970-01-01",
        service="redis",
    )
    auth = parse_tc3_authorization(
        "TC3-HMAC-SHA256 Credential=AK/1970-01-01/redis/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={sig}"
    )
    post = WireRequest(method="POST", path="/", query="", headers=headers, body=b"{}")
    verify_tc3(auth=auth, secret_key="s", request=post, timestamp="1")


def test_captured_legacy_hmacsha256_verifies() -> None:
    query = (
        "InstanceId=crs-abc12345&Password=Passw0rd!2024&NoAuth=False&Action=ResetPassword"
        "&RequestClient=SDK_PYTHON_3.1.194&Nonce=136733699252886606&Timestamp=1795346081"
        "&Version=2018-04-12&Region=ap-guangzhou&SecretId=AKIDEXAMPLE"
        "&SignatureMethod=HmacSHA256&Language=zh-CN"
    )
    params = dict(pair.split("=", 1) for pair in query.split("&"))
    verify_legacy(
        secret_key="secret",
        method="POST",
        host="127.0.0.1:38297",
        params=params,
        signature="a4aPGgUb9+eK08wF2DfygjJv+Kpnju45k3xzCgiIshs=",
    )
    with pytest.raises(SignatureInvalid):
        verify_legacy(
            secret_key="secret",
            method="GET",
            host="127.0.0.1:38297",
            params=params,
            signature="a4aPGgUb9+eK08wF2DfygjJv+Kpnju45k3xzCgiIshs=",
        )


def test_legacy_rejects_unknown_algorithms() -> None:
    with pytest.raises(SignatureInvalid):
        legacy_signature(secret_key="s", method="GET", host="h", params={}, algorithm="MD5")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Bearer x",
        "TC3-HMAC-SHA256 Credential=AK/2026-01-01/redis/tc3_request",
        "TC3-HMAC-SHA256",
    ],
)
def test_malformed_authorization(value: str) -> None:
    with pytest.raises(MissingAuthorization):
        parse_tc3_authorization(value)
