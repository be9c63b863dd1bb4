"""Tencent Cloud API 3.0 envelopes: read a signed call's identity out of a ``WireRequest`` (TC3
headers or legacy parameters), its parameters once it is authenticated (JSON, query or form),
and render ``{"Response": ...}`` answers.

Every answer is HTTP 200 with ``Content-Type: application/json`` exactly: the SDK parses errors
only for that content type (``application/json; charset=utf-8`` would make it swallow them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from keyturn.core.errors import InvalidParameter, MalformedRequest, MissingAuthorization
from keyturn.dialects._wire import WireRequest, WireResponse
from keyturn.dialects.tencent.params import unflatten
from keyturn.dialects.tencent.signing import Tc3Authorization, parse_tc3_authorization

JSON_HEADERS = {"content-type": "application/json"}

#: Legacy common parameters: signed, but not part of the action's own parameters.
LEGACY_COMMON = frozenset(
    {
        "Action",
        "Version",
        "Region",
        "Timestamp",
        "Nonce",
        "SecretId",
        "SignatureMethod",
        "Signature",
        "Language",
        "RequestClient",
        "Token",
    }
)


#: The most parameters a request may carry: far more than any action takes (a batch of 100
#: TDSQL users is 300), and a bound on the work of reading junk before it is authenticated.
MAX_PARAMETERS = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class TencentEnvelope:
    """A request's identity and signature material, not yet authenticated. The action's own
    parameters are not read here: ``call_params`` reads them once the signature verified."""

    action: str
    version: str
    region: str
    secret_id: str
    timestamp: str
    #: The TC3 credential scope's service; None for legacy signatures.
    service: str | None
    tc3: Tc3Authorization | None = None
    #: Legacy signatures: every signed parameter, flat and decoded (``Signature`` excluded),
    #: and the ``Signature``.
    legacy_params: dict[str, str] | None = None
    legacy_pairs: tuple[tuple[str, str], ...] = ()
    signature: str = ""


def read_envelope(request: WireRequest) -> TencentEnvelope:
    authorization = request.header("authorization")
    if authorization.startswith("TC3-"):
        return _tc3_envelope(request, authorization)
    return _legacy_envelope(request)


def call_params(envelope: TencentEnvelope, request: WireRequest) -> dict[str, Any]:
    """The action's parameters, typed as JSON types or strings (see ``Params``). Call it only
    once the request is authenticated."""
    if envelope.tc3 is None:
        return unflatten((k, v) for k, v in envelope.legacy_pairs if k not in LEGACY_COMMON)
    if request.method == "GET":
        return unflatten(_query_pairs(request.query))
    return _body_params(request)


def _tc3_envelope(request: WireRequest, authorization: str) -> TencentEnvelope:
    auth = parse_tc3_authorization(authorization)
    action = request.header("x-tc-action")
    if not action:
        raise MissingAuthorization("the X-TC-Action header is missing")
    timestamp = request.header("x-tc-timestamp")
    if not timestamp:
        raise MissingAuthorization("the X-TC-Timestamp header is missing")
    return TencentEnvelope(
        action=action,
        version=request.header("x-tc-version"),
        region=request.header("x-tc-region"),
        secret_id=auth.secret_id,
        timestamp=timestamp,
        service=auth.service,
        tc3=auth,
    )


def _legacy_envelope(request: WireRequest) -> TencentEnvelope:
    if request.method == "GET":
        pairs = _query_pairs(request.query)
    elif _content_type(request) == "application/x-www-form-urlencoded":
        pairs = _form_pairs(request.body)
    else:
        raise MissingAuthorization("the request carries no Authorization header or signature")
    flat = dict(pairs)
    if len(flat) != len(pairs):
        raise InvalidParameter("A parameter is given twice.")
    if "Signature" not in flat or "SecretId" not in flat:
        raise MissingAuthorization("the request carries no Authorization header or signature")
    return TencentEnvelope(
        action=flat.get("Action", ""),
        version=flat.get("Version", ""),
        region=flat.get("Region", ""),
        secret_id=flat["SecretId"],
        timestamp=flat.get("Timestamp", ""),
        service=None,
        legacy_params={k: v for k, v in flat.items() if k != "Signature"},
        legacy_pairs=tuple(pairs),
        signature=flat["Signature"],
    )


def _content_type(request: WireRequest) -> str:
    return request.header("content-type").split(";", 1)[0].strip().lower()


def _body_params(request: WireRequest) -> dict[str, Any]:
    kind = _content_type(request)
    if kind == "application/x-www-form-urlencoded":
        return unflatten(_form_pairs(request.body))
    if kind not in ("application/json", ""):
        raise MalformedRequest(f"Content-Type {kind!r} is not supported; use application/json.")
    if not request.body.strip():
        return {}
    try:
        value = json.loads(request.body)
    except (ValueError, RecursionError):
        raise MalformedRequest("The request body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise MalformedRequest("The request body must be a JSON object.")
    return value


def _query_pairs(query: str) -> list[tuple[str, str]]:
    try:
        return parse_qsl(
            query,
            keep_blank_values=True,
            strict_parsing=False,
            errors="strict",
            max_num_fields=MAX_PARAMETERS,
        )
    except UnicodeDecodeError:
        raise MalformedRequest("The query string cannot be decoded.") from None
    except ValueError:
        raise MalformedRequest(
            f"The request carries more than {MAX_PARAMETERS} parameters."
        ) from None


def _form_pairs(body: bytes) -> list[tuple[str, str]]:
    try:
        return _query_pairs(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise MalformedRequest("The form body is not UTF-8.") from None


def render(payload: dict[str, Any], request_id: str) -> WireResponse:
    body = {"Response": {**payload, "RequestId": request_id}}
    return WireResponse(
        status=200,
        body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        headers=JSON_HEADERS,
    )


def render_error(code: str, message: str, request_id: str) -> WireResponse:
    return render({"Error": {"Code": code, "Message": message}}, request_id)
