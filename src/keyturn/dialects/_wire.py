"""The framework-neutral request and response that every dialect speaks.

``http`` builds a ``WireRequest`` from ASGI and sends back the ``WireResponse``; dialects never
see the web framework, so they are testable with plain values. Header names are lower-case;
values and the query string are kept exactly as received, because they are signed input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from keyturn.service.context import Caller

#: The largest request body any dialect accepts; larger ones are refused before reading.
MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class WireRequest:
    """One HTTP request as received. ``headers`` keeps the first value of each lower-cased name."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes = b""
    client: str = ""

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)


@dataclass(frozen=True, slots=True, kw_only=True)
class WireResponse:
    """One HTTP response to send."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


class Dialect(Protocol):
    """A vendor protocol: claims requests by their headers, then answers them."""

    name: str

    def claims(self, request: WireRequest) -> bool:
        """Whether this dialect speaks the request (decided from method, path and headers)."""
        ...

    def too_large(self, request: WireRequest) -> WireResponse:
        """The vendor's answer to a body over ``MAX_BODY_BYTES`` (the body is not read)."""
        ...

    async def handle(self, request: WireRequest) -> WireResponse: ...


def caller_of(request: WireRequest, request_id: str, *, key_id: str, tenant_id: str = "") -> Caller:
    """Who sent ``request``: once authenticated, the key and its tenant; before that (to audit
    a refusal), tenant ``""`` and the key id the request claims."""
    return Caller(
        tenant_id=tenant_id,
        key_id=key_id,
        request_id=request_id,
        source_ip=request.client,
        user_agent=request.header("user-agent"),
    )
