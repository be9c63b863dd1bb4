"""Audit events: what the tamper-evident audit log records of each API call.

An event names who (tenant, access key, source address, user agent), what (vendor, vendor
action, neutral action, resource), the outcome (``started`` before a change is made, then
``succeeded``/``failed``/``denied``) with the vendor error code, and the request and task ids.
It never holds a password: there is no field for one. Pure: stdlib only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class AuditOutcome(enum.StrEnum):
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DENIED = "denied"


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    at: datetime
    tenant_id: str
    key_id: str
    source_ip: str
    user_agent: str
    vendor: str
    #: The vendor-qualified action, e.g. ``redis:ResetPassword``, ``dcs:instance:modifyAuthInfo``.
    action: str
    #: keyturn's own name for it, e.g. ``reset_password``; empty for reads.
    neutral_action: str
    resource: str
    outcome: AuditOutcome
    error_code: str = ""
    request_id: str = ""
    task_id: str = ""
