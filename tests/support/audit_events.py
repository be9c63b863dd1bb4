"""Audit events for the audit log's tests: ``audit_event`` fills every field a test does not
care about, so each test names only the ones it checks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from keyturn.core.audit import AuditEvent, AuditOutcome

#: The instant of an event a test gives none.
AT = datetime(2026, 1, 1, tzinfo=UTC)


def audit_event(**fields: Any) -> AuditEvent:
    """A succeeded ``redis:ResetPassword`` by ``AKIDaudit`` of tenant ``t``, with ``fields``
    instead where given."""
    defaults: dict[str, Any] = {
        "at": AT,
        "tenant_id": "t",
        "key_id": "AKIDaudit",
        "source_ip": "",
        "user_agent": "",
        "vendor": "tencent",
        "action": "redis:ResetPassword",
        "neutral_action": "reset_password",
        "resource": "r",
        "outcome": AuditOutcome.SUCCEEDED,
    }
    return AuditEvent(**{**defaults, **fields})
