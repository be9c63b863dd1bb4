"""Tencent Cloud API 3.0 signatures, verified server-side: TC3-HMAC-SHA256 and the legacy
HmacSHA256 / HmacSHA1 parameter signatures. Pure functions, no I/O.

Hand-written because no library verifies these server-side; the canonical forms follow the
official SDK (``tencentcloud/common/sign.py``). The ``Host`` header is signed input taken byte for
byte (tccli sends ``Host: http://127.0.0.1:PORT``); only ``content-type`` and ``host`` are signed
by the SDK, but any ``SignedHeaders`` list it names is honoured.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

from keyturn.core.errors import MissingAuthorization, SignatureInvalid
from keyturn.dialects._wire import WireRequest

TC3_ALGORITHM = "TC3-HMAC-SHA256"
_TC3_AUTH = re.compile(
    r"^TC3-HMAC-SHA256\s+Credential=(?P<id>[^/,\s]+)/(?P<date>\d{4}-\d{2}-\d{2})/"
    r"(?P<service>[A-Za-z0-9_-]+)/tc3_request\s*,\s*SignedHeaders=(?P<headers>[a-z0-9;_-]+)"
    r"\s*,\s*Signature=(?P<sig>[0-9a-fA-F]{64})\s*$"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Tc3Authorization:
    """The parsed ``Authorization`` header of a TC3 request."""

    secret_id: str
    date: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_tc3_authorization(value: str) -> Tc3Authorization:
    match = _TC3_AUTH.match(value.strip())
    if match is None:
        raise MissingAuthorization("the Authorization header is not a valid TC3-HMAC-SHA256 value")
    return Tc3Authorization(
        secret_id=match["id"],
        date=match["date"],
        service=match["service"],
        signed_headers=tuple(match["headers"].split(";")),
        signature=match["sig"].lower(),
    )


def _hmac256(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def tc3_signature(
    *,
    secret_key: str,
    method: str,
    query: str,
    headers: Mapping[str, str],
    signed_headers: tuple[str, ...],
    payload: bytes,
    timestamp: str,
    date: str,
    service: str,
) -> str:
    """Compute the hex TC3 signature of a request as the SDK does."""
    if headers.get("x-tc-content-sha256") == "UNSIGNED-PAYLOAD":
        payload = b"UNSIGNED-PAYLOAD"
    canonical_headers = "".join(f"{name}:{headers.get(name, '')}\n" for name in signed_headers)
    canonical_request = "\n".join(
        (
            method,
            "/",
            query,
            canonical_headers,
            ";".join(signed_headers),
            hashlib.sha256(payload).hexdigest(),
        )
    )
    scope = f"{date}/{service}/tc3_request"
    string_to_sign = "\n".join(
        (
            TC3_ALGORITHM,
            timestamp,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        )
    )
    k_date = _hmac256(("TC3" + secret_key).encode(), date)
    k_service = _hmac256(k_date, service)
    k_signing = _hmac256(k_service, "tc3_request")
    return hmac.new(k_signing, string_to_sign.encode(), hashlib.sha256).hexdigest()


def verify_tc3(
    *, auth: Tc3Authorization, secret_key: str, request: WireRequest, timestamp: str
) -> None:
    """Raise ``SignatureInvalid`` unless the request's TC3 signature matches."""
    method = request.method
    expected = tc3_signature(
        secret_key=secret_key,
        method=method,
        # The SDK signs the query string exactly as sent for GET and an empty one for POST.
        query=request.query if method == "GET" else "",
        headers=request.headers,
        signed_headers=auth.signed_headers,
        payload=request.body,
        timestamp=timestamp,
        date=auth.date,
        service=auth.service,
    )
    if not hmac.compare_digest(expected, auth.signature):
        raise SignatureInvalid("the request signature does not match")


_LEGACY_DIGESTS = {"HmacSHA256": hashlib.sha256, "HmacSHA1": hashlib.sha1}


def legacy_signature(
    *, secret_key: str, method: str, host: str, params: Mapping[str, str], algorithm: str
) -> str:
    """Compute the base64 legacy signature over the sorted parameters (``Signature`` excluded)."""
    digest = _LEGACY_DIGESTS.get(algorithm)
    if digest is None:
        raise SignatureInvalid("SignatureMethod must be HmacSHA256 or HmacSHA1")
    # The SDK replaces "_" by "." in names before sorting and joins raw (not URL-encoded) values.
    pairs = sorted(
        (key.replace("_", "."), value) for key, value in params.items() if key != "Signature"
    )
    text = method + host + "/?" + "&".join(f"{k}={v}" for k, v in pairs)
    mac = hmac.new(secret_key.encode(), text.encode(), digest).digest()
    return base64.b64encode(mac).decode()


def verify_legacy(
    *, secret_key: str, method: str, host: str, params: Mapping[str, str], signature: str
) -> None:
    """Raise ``SignatureInvalid`` unless the legacy ``Signature`` parameter matches."""
    expected = legacy_signature(
        secret_key=secret_key,
        method=method,
        host=host,
        params=params,
        algorithm=params.get("SignatureMethod", "HmacSHA1"),
    )
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise SignatureInvalid("the request signature does not match")
