"""Huawei Cloud REST envelopes: read a request's JSON body and query, and render answers.

Successes are the API's own JSON object; failures are HTTP 4xx/5xx with
``{"error_code", "error_msg", "error_ext_msg": null}`` (the SDK raises
``ClientRequestException`` / ``ServerResponseException`` from them). Every answer, success or
not, carries an ``X-Request-Id`` header, which is where the SDK reads the request id from.
``Body`` and ``Query`` give typed access to parameters and name the parameter in their errors.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from keyturn.core.errors import InvalidParameter, InvalidParameterValue, MalformedRequest
from keyturn.dialects._wire import WireRequest, WireResponse

CONTENT_TYPE = "application/json"


class EmptyBody(MalformedRequest):
    """The request body is empty."""

    code = "EmptyBody"


class InvalidProjectId(InvalidParameterValue):
    """Invalid project ID format."""

    code = "InvalidProjectId"


def new_request_id() -> str:
    """A request id shaped like Huawei's (32 hex digits)."""
    return uuid.uuid4().hex


def invalid(name: str) -> str:
    """DCS's message for a bad parameter (111400063)."""
    return f"Invalid parameter {name} in the request."


class Body:
    """Typed access to a JSON object body."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = values

    @classmethod
    def parse(cls, request: WireRequest) -> Body:
        if not request.body.strip():
            raise EmptyBody("Empty request body.")
        try:
            value = json.loads(request.body)
        except (ValueError, RecursionError):
            raise MalformedRequest(
                "The message body contains invalid characters or is not in JSON format."
            ) from None
        if not isinstance(value, dict):
            raise MalformedRequest("The message body must be a JSON object.")
        return cls(value)

    def string(self, name: str) -> str | None:
        value = self._values.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise InvalidParameter(invalid(name))
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self._values.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise InvalidParameter(invalid(name))
        return value


class Query:
    """Typed access to decoded query parameters; a repeated name is refused."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self._values: dict[str, str] = {}
        for key, value in pairs:
            if key in self._values:
                raise InvalidParameter(invalid(key))
            self._values[key] = value

    def string(self, name: str) -> str | None:
        value = self._values.get(name)
        return value if value else None

    def integer(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        raw = self._values.get(name)
        if raw is None or raw == "":
            return default
        if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
            raise InvalidParameter(invalid(name))
        value = int(raw)
        if not minimum <= value <= maximum:
            raise InvalidParameterValue(invalid(name))
        return value


def render(payload: Mapping[str, Any], request_id: str, status: int = 200) -> WireResponse:
    return WireResponse(
        status=status,
        body=json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode(),
        headers={"content-type": CONTENT_TYPE, "x-request-id": request_id},
    )


def render_error(code: str, status: int, message: str, request_id: str) -> WireResponse:
    return render(
        {"error_code": code, "error_msg": message, "error_ext_msg": None}, request_id, status
    )
