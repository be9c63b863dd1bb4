"""The caller of a use case: who is asking (tenant, key), and the request's identity for audit.

Every service call takes a ``Caller`` so that scoping by tenant is explicit at each access,
never held in global state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    """An authenticated API caller."""

    tenant_id: str
    key_id: str
    request_id: str
    source_ip: str = ""
    user_agent: str = ""


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)
