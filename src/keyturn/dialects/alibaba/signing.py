"""Alibaba Cloud API signatures, verified server-side: ACS3-HMAC-SHA256 (the Tea SDK's default)
and the RPC HMAC-SHA1 signature version 1.0 (the Tea SDK with ``signature_algorithm='v2'`` and
the legacy aliyun-python-sdk-core). Pure functions, no I/O.

Hand-written because no library verifies these server-side; the canonical forms follow the
official SDKs (``alibabacloud_tea_openapi/utils.py`` ``get_authorization`` and
``get_rpcsignature``, ``aliyunsdkcore/auth/composer/rpc_signature_composer.py``). Parameters
arrive decoded (the SDKs build URLs with ``urlencode``, so ``+`` means a space) and are
re-encoded RFC 3986 style here, which is what both SDKs sign. Nothing here puts a secret or a
string to sign (it may hold a password parameter) into an error message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from keyturn.core.errors import (
    MissingAuthorization,
    SignatureExpired,
    SignatureInvalid,
    TimestampMalformed,
)
from keyturn.dialects._wire import WireRequest

ACS3_ALGORITHM = "ACS3-HMAC-SHA256"
RPC_SIGNATURE_METHOD = "HMAC-SHA1"
RPC_SIGNATURE_VERSION = "1.0"
#: Both generations write timestamps as ISO 8601 UTC with seconds, e.g. 2026-11-22T11:14:43Z.
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

#: Headers an ACS3 signature must cover: without them a signed request could be replayed with
#: another action, version, time, nonce or body, or sent to another host.
REQUIRED_SIGNED_HEADERS = frozenset(
    {
        "host",
        "x-acs-action",
        "x-acs-version",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-content-sha256",
    }
)

_ACS3_AUTH = re.compile(
    r"ACS3-HMAC-SHA256\s+Credential=(?P<id>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<headers>[a-z0-9._-]+(?:;[a-z0-9._-]+)*)\s*,\s*"
    r"Signature=(?P<sig>[0-9a-fA-F]{64})\s*"
)
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class Acs3Authorization:
    """The parsed ``Authorization`` header of an ACS3 request."""

    access_key_id: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_acs3_authorization(value: str) -> Acs3Authorization:
    """Parse ``ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=a;b,Signature=hex``."""
    match = _ACS3_AUTH.fullmatch(value.strip())
    if match is None:
        raise MissingAuthorization(
            "The Authorization header is not a valid ACS3-HMAC-SHA256 value "
            "(ACS3-HMAC-SM3 and ACS3-RSA-SHA256 are not supported)."
        )
    signed = tuple(match["headers"].split(";"))
    missing = sorted(REQUIRED_SIGNED_HEADERS - set(signed))
    if missing:
        raise MissingAuthorization("SignedHeaders must include " + ", ".join(missing) + ".")
    return Acs3Authorization(
        access_key_id=match["id"], signed_headers=signed, signature=match["sig"].lower()
    )


def percent_encode(value: str) -> str:
    """RFC 3986 encoding: everything but ``A-Z a-z 0-9 - _ . ~`` as UTF-8 ``%XX``."""
    return quote(value, safe="~", encoding="utf-8")


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """The ACS3 canonical query: sorted by name, values RFC 3986 encoded. Names are taken as
    they are, like the SDK does (its parameter names never need encoding)."""
    return "&".join(f"{name}={percent_encode(value)}" for name, value in sorted(pairs))


def acs3_signature(
    *,
    secret: str,
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    signed_headers: tuple[str, ...],
    content_sha256: str,
) -> str:
    """The hex ACS3-HMAC-SHA256 signature of a request, as the Tea SDK computes it."""
    canonical_headers = "".join(
        f"{name}:{headers.get(name, '').strip()}\n" for name in signed_headers
    )
    canonical_request = "\n".join(
        (
            method,
            path or "/",
            canonical_query(query),
            canonical_headers,
            ";".join(signed_headers),
            content_sha256,
        )
    )
    string_to_sign = ACS3_ALGORITHM + "\n" + hashlib.sha256(canonical_request.encode()).hexdigest()
    return hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def verify_acs3(
    *,
    auth: Acs3Authorization,
    secret: str,
    request: WireRequest,
    query: Iterable[tuple[str, str]],
) -> None:
    """Raise ``SignatureInvalid`` unless the body matches ``x-acs-content-sha256`` and the ACS3
    signature matches; ``query`` is the request's, as its envelope parsed it."""
    content_sha256 = hashlib.sha256(request.body).hexdigest()
    declared = request.header("x-acs-content-sha256").strip().lower()
    if not hmac.compare_digest(declared.encode(), content_sha256.encode()):
        raise SignatureInvalid("the body does not match x-acs-content-sha256")
    expected = acs3_signature(
        secret=secret,
        method=request.method,
        path=request.path,
        query=query,
        headers=request.headers,
        signed_headers=auth.signed_headers,
        content_sha256=content_sha256,
    )
    if not hmac.compare_digest(expected.encode(), auth.signature.encode()):
        raise SignatureInvalid("the request signature does not match")


def rpc_string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """``METHOD&%2F&pct(sorted k=v joined with &)`` over every parameter but ``Signature``.

    The result holds every parameter value, passwords included: never log or show it."""
    canonical = "&".join(
        f"{percent_encode(name)}={percent_encode(value)}"
        for name, value in sorted(params.items())
        if name != "Signature"
    )
    return f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"


def rpc_signature(*, secret: str, method: str, params: Mapping[str, str]) -> str:
    """The base64 HMAC-SHA1 RPC signature keyed with ``secret + "&"``."""
    text = rpc_string_to_sign(method, params)
    mac = hmac.new((secret + "&").encode(), text.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def verify_rpc(*, secret: str, method: str, params: Mapping[str, str], signature: str) -> None:
    """Raise unless the parameters name HMAC-SHA1 version 1.0 and ``signature`` matches."""
    if params.get("SignatureMethod") != RPC_SIGNATURE_METHOD:
        raise MissingAuthorization("SignatureMethod must be HMAC-SHA1.")
    if params.get("SignatureVersion") != RPC_SIGNATURE_VERSION:
        raise MissingAuthorization("SignatureVersion must be 1.0.")
    expected = rpc_signature(secret=secret, method=method, params=params)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise SignatureInvalid("the request signature does not match")


def check_timestamp(value: str, now: datetime, window_seconds: float) -> None:
    """``TimestampMalformed`` unless ``value`` is ``%Y-%m-%dT%H:%M:%SZ``; ``SignatureExpired``
    when it is more than ``window_seconds`` away from ``now`` (either way)."""
    if not _TIMESTAMP.fullmatch(value):
        raise TimestampMalformed()
    try:
        moment = datetime.strptime(value, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise TimestampMalformed() from None
    if abs((now - moment).total_seconds()) > window_seconds:
        raise SignatureExpired(
            f"The request time is more than {window_seconds / 60:g} minutes from the server time."
        )
