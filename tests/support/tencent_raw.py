"""Hand-made Tencent Cloud API requests, signed with the official SDK's own ``Sign`` helpers,
for what an SDK will not send on purpose: crafted parameter names and numbers, foreign hosts,
replays, skewed clocks. ``tc3_post`` signs TC3-HMAC-SHA256 over a JSON (or any) body;
``legacy_call`` signs the HmacSHA256 parameter signature over a form body or a GET query."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import httpx
from tencentcloud.common.sign import Sign

from tests.support.keyturn_server import KEY_ID, KEY_SECRET


def tc3_headers(
    host: str,
    action: str,
    payload: bytes,
    *,
    service: str = "redis",
    version: str = "2018-04-12",
    region: str = "ap-guangzhou",
    key_id: str = KEY_ID,
    secret: str = KEY_SECRET,
    timestamp: str | None = None,
    content_type: str = "application/json",
) -> dict[str, str]:
    """The headers of a TC3-signed POST of ``payload`` to ``host`` (``timestamp`` may be any
    text: it is sent and signed as is)."""
    ts = timestamp if timestamp is not None else str(int(time.time()))
    date = time.strftime("%Y-%m-%d", time.gmtime(int(time.time())))
    signed = {"content-type": content_type, "host": host}
    canonical = "\n".join(
        [
            "POST",
            "/",
            "",
            "".join(f"{k}:{v}\n" for k, v in signed.items()),
            "content-type;host",
            hashlib.sha256(payload).hexdigest(),
        ]
    )
    scope = f"{date}/{service}/tc3_request"
    to_sign = "\n".join(
        ["TC3-HMAC-SHA256", ts, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    signature = Sign.sign_tc3(secret, date, service, to_sign)
    headers = {
        "Content-Type": content_type,
        "Host": host,
        "X-TC-Action": action,
        "X-TC-Version": version,
        "X-TC-Timestamp": ts,
        "Authorization": f"TC3-HMAC-SHA256 Credential={key_id}/{scope}, "
        f"SignedHeaders=content-type;host, Signature={signature}",
    }
    if region:
        headers["X-TC-Region"] = region
    return headers


def tc3_post(
    endpoint: str,
    action: str,
    body: bytes | Mapping[str, Any] = b"{}",
    *,
    host: str | None = None,
    timeout: float = 10.0,
    **signing: Any,
) -> httpx.Response:
    """POST a TC3-signed call to ``endpoint`` (signed for ``host``, the endpoint by default)."""
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = tc3_headers(host or endpoint, action, payload, **signing)
    return httpx.post(f"http://{endpoint}/", content=payload, headers=headers, timeout=timeout)


def legacy_signed(
    host: str,
    action: str,
    params: Mapping[str, str],
    *,
    method: str = "POST",
    version: str = "2018-04-12",
    key_id: str = KEY_ID,
    secret: str = KEY_SECRET,
    timestamp: str | None = None,
) -> str:
    """The url-encoded parameters (form body or query) of a legacy HmacSHA256 call."""
    signed = {
        "Action": action,
        "Version": version,
        "Region": "ap-guangzhou",
        "Timestamp": timestamp if timestamp is not None else str(int(time.time())),
        "Nonce": str(uuid.uuid4().int % 10**9),
        "SecretId": key_id,
        "SignatureMethod": "HmacSHA256",
        **params,
    }
    pairs = sorted((k.replace("_", "."), v) for k, v in signed.items())
    text = "&".join(f"{k}={v}" for k, v in pairs)
    signature = Sign.sign(secret, f"{method}{host}/?{text}", "HmacSHA256")
    return urlencode({**signed, "Signature": signature})


def legacy_call(
    endpoint: str,
    action: str,
    params: Mapping[str, str],
    *,
    method: str = "POST",
    host: str | None = None,
    timeout: float = 10.0,
    **signing: Any,
) -> httpx.Response:
    """A call signed with the legacy HmacSHA256 parameter signature, as the SDK builds it."""
    encoded = legacy_signed(host or endpoint, action, params, method=method, **signing)
    headers = {"Host": host or endpoint}
    if method == "GET":
        return httpx.get(f"http://{endpoint}/?{encoded}", headers=headers, timeout=timeout)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    return httpx.post(f"http://{endpoint}/", content=encoded, headers=headers, timeout=timeout)


def tencent_error(response: httpx.Response) -> str | None:
    """The error code of a Tencent answer (None on success); every answer is HTTP 200 JSON."""
    assert response.status_code == 200, response.status_code
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()["Response"]
    assert body["RequestId"]
    error = body.get("Error")
    return None if error is None else str(error["Code"])
