"""SDK-HMAC-SHA256 verification against requests captured from the official Huawei Cloud SDK
(huaweicloudsdkcore 3.1.219, fake AK ``AKEXAMPLE`` / SK ``secret``), and the server-side rules
that go beyond the SDK (what must be signed, no unsigned bodies)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest

from keyturn.core.errors import MissingAuthorization, SignatureInvalid
from keyturn.dialects._wire import WireRequest
from keyturn.dialects.huawei.signing import (
    EMPTY_HASH,
    canonical_query,
    canonical_request,
    canonical_uri,
    parse_authorization,
    parse_sdk_date,
    query_pairs,
    signature,
    string_to_sign,
    verify,
)

SECRET = "secret"
PROJECT = "0123456789abcdef0123456789abcdef"
INSTANCE_PATH = f"/v2/{PROJECT}/instances/6d1d7a5c-1111-2222-3333-444455556666"
USER_AGENT = (
    "huaweicloud-usdk-python/3.0; os/Linux##1_SMP_PREEMPT_DYNAMIC_@0#x86_64 python/3.11.7 "
    "impl/CPython; app/89829fa1-1ff4-4d97-a04a-88e77b66e753"
)
SIGNED = "content-type;host;user-agent;x-project-id;x-sdk-date"


def headers(
    signature_hex: str,
    *,
    date: str = "20261122T111446Z",
    content_type: str = "application/json;charset=utf-8",
    signed: str = SIGNED,
    **extra: str,
) -> dict[str, str]:
    return {
        "user-agent": USER_AGENT,
        "content-type": content_type,
        "x-project-id": PROJECT,
        "x-sdk-date": date,
        "host": "127.0.0.1:60807",
        "authorization": f"SDK-HMAC-SHA256 Access=AKEXAMPLE, SignedHeaders={signed}, "
        f"Signature={signature_hex}",
        **extra,
    }


#: (method, path, query, headers, body) as captured; every signature was made by the SDK.
CAPTURED = [
    (
        "POST",
        INSTANCE_PATH + "/password/reset",
        "",
        headers(
            "8e0b1538f945adea99414beb827e371444918f249bcb4487b854b1b187e461b5",
            date="20261122T111445Z",
        ),
        b'{"new_password": "Passw0rd!2024", "no_password_access": false}',
    ),
    (
        "POST",
        INSTANCE_PATH + "/password/reset",
        "",
        headers("735fd6ce316c352cbbd424f3541091a1be8a52ea092f423d8ce2a83715148402"),
        b'{"no_password_access": true}',
    ),
    (
        "POST",
        INSTANCE_PATH + "/password/reset",
        "",
        headers(
            "5c85f05913d6d1df08c669d3b84bf89df4d1ca241c53aa496318a08d50d7fcd8",
            signed=SIGNED + ";x-security-token",
            **{"x-security-token": "STSTOKENEXAMPLE"},
        ),
        b'{"new_password": "Passw0rd!2024"}',
    ),
    (
        "GET",
        INSTANCE_PATH,
        "",
        headers(
            "db6189c78890ba6c732ca7599d1df6684b017d66c5ab0ac195bf892ee8bf6ac3",
            content_type="application/json",
        ),
        b"",
    ),
    (
        "GET",
        f"/v2/{PROJECT}/instances",
        "limit=10&name=dcs-test&offset=0",
        headers(
            "b300802b7c855b58b7a77acc40721aa809b458328bee02e531c65ff864c74bb5",
            content_type="application/json",
        ),
        b"",
    ),
]


def check(
    method: str, path: str, query: str, hdrs: dict[str, str], body: bytes, secret: str = SECRET
) -> None:
    verify(
        auth=parse_authorization(hdrs["authorization"]),
        secret_key=secret,
        request=WireRequest(method=method, path=path, query=query, headers=hdrs, body=body),
        sdk_date=parse_sdk_date(hdrs["x-sdk-date"]),
    )


@pytest.mark.parametrize(("method", "path", "query", "hdrs", "body"), CAPTURED)
def test_captured_sdk_requests_verify(
    method: str, path: str, query: str, hdrs: dict[str, str], body: bytes
) -> None:
    check(method, path, query, hdrs, body)


def canonical_of(method: str, path: str, query: str, hdrs: dict[str, str], body: bytes) -> str:
    """The canonical request of a request signed with ``hdrs``' own signed headers."""
    auth = parse_authorization(hdrs["authorization"])
    return canonical_request(
        method=method,
        path=path,
        query=query,
        headers=hdrs,
        signed_headers=auth.signed_headers,
        body=body,
    )


def test_canonical_request_matches_the_recomputation() -> None:
    method, path, query, hdrs, body = CAPTURED[0]
    auth = parse_authorization(hdrs["authorization"])
    canonical = canonical_of(method, path, query, hdrs, body)
    assert canonical == "\n".join(
        [
            "POST",
            path + "/",
            "",
            "content-type:application/json;charset=utf-8",
            "host:127.0.0.1:60807",
            f"user-agent:{USER_AGENT}",
            f"x-project-id:{PROJECT}",
            "x-sdk-date:20261122T111445Z",
            "",
            SIGNED,
            "3458da105652e99d2ef52e828fe14c4ee70d9302ae898b6f2aa1b4d7d7e9c629",
        ]
    )
    text = string_to_sign(canonical, parse_sdk_date("20261122T111445Z"))
    assert text == (
        "SDK-HMAC-SHA256\n20261122T111445Z\n"
        "9aa5a7b06c7fd1df35abb1bde944765dab74c8dbff91d1c035f411c76212e07b"
    )
    assert signature(SECRET, text) == auth.signature


@pytest.mark.parametrize(
    ("change", "value"),
    [
        ("body", b'{"new_password": "Passw0rd!2025", "no_password_access": false}'),
        ("path", INSTANCE_PATH.replace("6666", "6667") + "/password/reset"),
        ("method", "PUT"),
        ("query", "x=1"),
        ("host", "127.0.0.1:60808"),
        ("x-project-id", "f" * 32),
        ("secret", "Secret"),
    ],
)
def test_any_change_breaks_the_signature(change: str, value: object) -> None:
    method, path, query, hdrs, body = CAPTURED[0]
    args: dict[str, Any] = {
        "method": method,
        "path": path,
        "query": query,
        "hdrs": dict(hdrs),
        "body": body,
    }
    secret = SECRET
    if change == "secret":
        secret = str(value)
    elif change in ("host", "x-project-id"):
        args["hdrs"][change] = value
    else:
        args[change] = value
    with pytest.raises(SignatureInvalid):
        check(secret=secret, **args)


@pytest.mark.parametrize(
    ("signed", "extra"),
    [
        ("content-type;user-agent;x-project-id;x-sdk-date", {}),  # no host
        ("content-type;host;user-agent;x-project-id", {}),  # no x-sdk-date
        ("content-type;host;user-agent;x-sdk-date", {}),  # x-project-id sent, unsigned
        ("host;user-agent;x-project-id;x-sdk-date", {}),  # content-type sent, unsigned
        (SIGNED, {"x-sdk-content-sha256": "UNSIGNED-PAYLOAD"}),  # unsigned, and a body
        (SIGNED + ";x-zzz", {}),  # signed but missing
    ],
)
def test_signed_header_rules(signed: str, extra: dict[str, str]) -> None:
    hdrs = headers("0" * 64, signed=signed, **extra)
    with pytest.raises(MissingAuthorization):
        check("POST", INSTANCE_PATH + "/password/reset", "", hdrs, b"{}")


def sign(method: str, path: str, query: str, hdrs: dict[str, str], body: bytes) -> dict[str, str]:
    """Sign with the module's own canonical form (for cases the captures do not cover)."""
    canonical = canonical_of(method, path, query, hdrs, body)
    sig = signature(SECRET, string_to_sign(canonical, parse_sdk_date(hdrs["x-sdk-date"])))
    return {**hdrs, "authorization": hdrs["authorization"].replace("0" * 64, sig)}


def test_unsigned_payload_only_without_a_body() -> None:
    signed = SIGNED.replace("x-project-id", "x-project-id;x-sdk-content-sha256")
    hdrs = headers("0" * 64, signed=signed, **{"x-sdk-content-sha256": "UNSIGNED-PAYLOAD"})
    bodiless = sign("GET", INSTANCE_PATH, "", hdrs, b"")
    check("GET", INSTANCE_PATH, "", bodiless, b"")
    with pytest.raises(SignatureInvalid):
        check("POST", INSTANCE_PATH, "", bodiless, b'{"no_password_access": true}')
    # A declared hash that is the body's real hash is fine (the body is still authenticated).
    body = b'{"no_password_access": true}'
    real = headers(
        "0" * 64, signed=signed, **{"x-sdk-content-sha256": hashlib.sha256(body).hexdigest()}
    )
    check("POST", INSTANCE_PATH, "", sign("POST", INSTANCE_PATH, "", real, body), body)


def test_header_values_are_utf8_and_stripped() -> None:
    # On the wire the SDK sends the UTF-8 bytes of a header; the ASGI layer hands them over
    # decoded as latin-1.
    agent = "agent é".encode().decode("latin-1")
    hdrs = sign("GET", INSTANCE_PATH, "", headers("0" * 64, **{"user-agent": agent}), b"")
    check("GET", INSTANCE_PATH, "", {**hdrs, "user-agent": f"  {agent} "}, b"")
    with pytest.raises(SignatureInvalid):
        check("GET", INSTANCE_PATH, "", {**hdrs, "user-agent": "\xff\xfe"}, b"")


def test_canonical_uri_and_query() -> None:
    assert canonical_uri("/v2/p/instances") == "/v2/p/instances/"
    assert canonical_uri("/v2/p/instances/") == "/v2/p/instances/"
    assert canonical_uri("/v2/p/a b~c:d") == "/v2/p/a%20b~c%3Ad/"
    assert canonical_uri("/v2/p/é") == "/v2/p/%C3%A9/"
    assert query_pairs("offset=0&name=a%20b+c&flag&=x&") == [
        ("offset", "0"),
        ("name", "a b+c"),
        ("flag", ""),
        ("", "x"),
    ]
    assert canonical_query([("offset", "0"), ("limit", "10"), ("name", "dcs test~*")]) == (
        "limit=10&name=dcs%20test~%2A&offset=0"
    )
    assert canonical_query([("tag", "b"), ("tag", "a")]) == "tag=a&tag=b"
    assert EMPTY_HASH.startswith("e3b0c442")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "SDK-HMAC-SM3 Access=AKEXAMPLE, SignedHeaders=host;x-sdk-date, Signature=" + "0" * 64,
        "V11-HMAC-SHA256 Credential=AK/20261122/r/s, SignedHeaders=host, Signature=" + "0" * 64,
        "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature=abc",
        "SDK-HMAC-SHA256 Access=AK, SignedHeaders=x-sdk-date;host, Signature=" + "0" * 64,
        "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;;x-sdk-date, Signature=" + "0" * 64,
        "SDK-HMAC-SHA256 Access=AK, SignedHeaders=Host;x-sdk-date, Signature=" + "0" * 64,
        "SDK-HMAC-SHA256 Signature=" + "0" * 64,
    ],
)
def test_malformed_authorization(value: str) -> None:
    with pytest.raises(MissingAuthorization):
        parse_authorization(value)


def test_parse_authorization() -> None:
    auth = parse_authorization(str(CAPTURED[0][3]["authorization"]))
    assert auth.access_key == "AKEXAMPLE"
    assert auth.signed_headers == tuple(SIGNED.split(";"))
    assert auth.signature.startswith("8e0b1538")


@pytest.mark.parametrize(
    "value", ["", "2026-11-22T11:14:45Z", "20261122T111445", "20261322T111445Z", "2026112T1T1T1Z  "]
)
def test_malformed_sdk_date(value: str) -> None:
    with pytest.raises(MissingAuthorization):
        parse_sdk_date(value)


def test_sdk_date_is_utc() -> None:
    assert parse_sdk_date("20261122T111445Z") == datetime(2026, 11, 22, 11, 14, 45, tzinfo=UTC)
