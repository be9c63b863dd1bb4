"""Alibaba Cloud RPC envelopes: read a signed call out of a ``WireRequest`` and render answers.

Two signature generations arrive on ``/``: ACS3 (``Authorization: ACS3-HMAC-SHA256 ...`` with
``x-acs-action``, ``x-acs-version``, ``x-acs-date`` and ``x-acs-signature-nonce`` headers) and
RPC v1 (``Action``, ``Version``, ``Timestamp``, ``SignatureNonce``, ``AccessKeyId`` and
``Signature`` parameters). Either way the action's parameters come from the query string and,
when the body is a form, from the body too; a name given twice is refused. Success is HTTP 200
with a JSON object holding ``RequestId``; an error is HTTP 4xx/5xx with ``RequestId``,
``HostId``, ``Code``, ``Message`` and ``Recommend``, the shape both SDKs parse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from keyturn.core.errors import (
    InvalidParameter,
    MalformedRequest,
    MissingAuthorization,
    MissingParameter,
)
from keyturn.dialects._wire import WireRequest, WireResponse
from keyturn.dialects.alibaba.signing import Acs3Authorization, parse_acs3_authorization

#: What Alibaba answers with; the Tea SDK parses any non-XML body as JSON.
CONTENT_TYPE = "application/json;charset=utf-8"
#: More parameters than any action takes, to bound the work of parsing junk.
MAX_PARAMETERS = 200
_FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True, slots=True, kw_only=True)
class AlibabaCall:
    """A parsed, not yet authenticated, API call."""

    action: str
    version: str
    access_key_id: str
    timestamp: str
    nonce: str
    #: The query string's parameters, decoded, in order (signed input for ACS3).
    query: tuple[tuple[str, str], ...]
    #: Every parameter (query and form body); for RPC calls ``Signature`` excluded.
    params: dict[str, str]
    acs3: Acs3Authorization | None = None
    #: RPC calls: the ``Signature`` parameter.
    signature: str = ""


def parse_call(request: WireRequest) -> AlibabaCall:
    query = _decode_pairs(request.query.encode("latin-1"), "query string")
    pairs = query + _body_pairs(request)
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise InvalidParameter(f'The parameter "{name}" is given twice.')
        params[name] = value
    authorization = request.header("authorization")
    if authorization.startswith("ACS3-"):
        return _acs3_call(request, authorization, tuple(query), params)
    return _rpc_call(tuple(query), params)


def _acs3_call(
    request: WireRequest,
    authorization: str,
    query: tuple[tuple[str, str], ...],
    params: dict[str, str],
) -> AlibabaCall:
    auth = parse_acs3_authorization(authorization)
    values = {}
    for header in ("x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce"):
        values[header] = request.header(header).strip()
        if not values[header]:
            raise MissingAuthorization(f"The {header} header is missing.")
    return AlibabaCall(
        action=values["x-acs-action"],
        version=values["x-acs-version"],
        access_key_id=auth.access_key_id,
        timestamp=values["x-acs-date"],
        nonce=values["x-acs-signature-nonce"],
        query=query,
        params=params,
        acs3=auth,
    )


def _rpc_call(query: tuple[tuple[str, str], ...], params: dict[str, str]) -> AlibabaCall:
    signature = params.pop("Signature", "")
    if not signature:
        raise MissingAuthorization(
            "The request carries neither an ACS3 Authorization header nor a Signature parameter."
        )
    for name in ("AccessKeyId", "Action", "Version", "Timestamp", "SignatureNonce"):
        if not params.get(name):
            raise MissingParameter(
                f'The input parameter "{name}" that is mandatory for processing this request '
                "is not supplied."
            )
    return AlibabaCall(
        action=params["Action"],
        version=params["Version"],
        access_key_id=params["AccessKeyId"],
        timestamp=params["Timestamp"],
        nonce=params["SignatureNonce"],
        query=query,
        params=params,
        signature=signature,
    )


def _body_pairs(request: WireRequest) -> list[tuple[str, str]]:
    kind = request.header("content-type").split(";", 1)[0].strip().lower()
    # Other bodies carry no parameters in the RPC style; ACS3 still signs them by their hash.
    if kind != _FORM or not request.body:
        return []
    return _decode_pairs(request.body, "form body")


def _decode_pairs(raw: bytes, where: str) -> list[tuple[str, str]]:
    try:
        text = raw.decode("utf-8")
        return parse_qsl(
            text,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_PARAMETERS,
        )
    except UnicodeDecodeError:
        raise MalformedRequest(f"The {where} is not valid UTF-8.") from None
    except ValueError:
        raise MalformedRequest(f"The {where} has too many parameters.") from None


def _body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _headers(request_id: str) -> dict[str, str]:
    return {"content-type": CONTENT_TYPE, "x-acs-request-id": request_id}


def render(payload: dict[str, Any], request_id: str) -> WireResponse:
    return WireResponse(
        status=200, body=_body({"RequestId": request_id, **payload}), headers=_headers(request_id)
    )


def render_error(
    *, status: int, code: str, message: str, request_id: str, host: str
) -> WireResponse:
    body = {
        "RequestId": request_id,
        "HostId": host,
        "Code": code,
        "Message": message,
        "Recommend": f"https://api.aliyun.com/troubleshoot?q={code}",
    }
    return WireResponse(status=status, body=_body(body), headers=_headers(request_id))
