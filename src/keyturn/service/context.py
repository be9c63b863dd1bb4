"""The caller of a use case: who is asking (tenant, key), the request's identity for audit, what
the call may touch, and what an action answers.

Every service call takes a ``Caller`` so that scoping by tenant is explicit at each access,
never held in global state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from keyturn.core.model import Instance
from keyturn.service.access import UNRESTRICTED, Access


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    """An authenticated API caller."""

    tenant_id: str
    key_id: str
    request_id: str
    source_ip: str = ""
    user_agent: str = ""
    #: What this call may touch, set by the gate once it authorized the call.
    access: Access = UNRESTRICTED
    #: The caller's instance the call names, as the gate read it for the call's region: the
    #: use case takes it instead of reading it again (``queries.owned_instance``).
    instance: Instance | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Answer:
    """What an action answers: the fields of the vendor's response and, for a change that
    queued a task, the task's id (recorded in the audit log)."""

    payload: dict[str, Any]
    task_id: int | None = None


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)
