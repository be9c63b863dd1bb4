"""JSON log lines (``KEYTURN_LOG_FORMAT=json``): one JSON object a line, for log pipelines.

Each line holds ``time`` (ISO-8601, UTC, milliseconds), ``level``, ``logger`` and ``message``;
then, inside a vendor call, the request's ``request_id``, ``vendor``, ``tenant`` (once
authenticated) and ``action`` (once routed) from ``keyturn.core.logcontext``, which tasks a call
queued inherit; then every field a call site passes with ``extra=`` (``task_id``, ``state``,
``duration`` in seconds...); ``pid`` under ``serve --workers``; ``exception`` and ``stack``
when the record has them. Redaction applies as to text lines: ``RedactingFilter`` has already
rewritten the message and traceback when the formatter runs, and the formatter passes every
string field through ``keyturn.logredact.redact`` again, extras and context included, so
nothing reaches the line unredacted. Pure standard library.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Final

from keyturn.core.logcontext import CURRENT_REQUEST
from keyturn.logredact import redact

#: Attributes every ``LogRecord`` has: anything else on a record came with ``extra=``
#: (except uvicorn's ``color_message``, its message with terminal colour codes).
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


def _value(value: Any) -> Any:
    """A JSON value for an extra field, strings redacted."""
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(value if isinstance(value, str) else str(value))


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object (see the module docstring); ``with_pid`` adds the
    process id (``serve --workers``)."""

    def __init__(self, *, with_pid: bool = False) -> None:
        super().__init__()
        self._with_pid = with_pid

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, Any] = {
            "time": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if self._with_pid:
            line["pid"] = record.process
        context = CURRENT_REQUEST.get()
        if context is not None:
            line["request_id"] = redact(context.request_id)
            line["vendor"] = context.vendor
            if context.tenant:
                line["tenant"] = redact(context.tenant)
            if context.action:
                line["action"] = redact(context.action)
            if context.task_id is not None:
                line["task_id"] = context.task_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = _value(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = redact(record.exc_text)
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(line, default=str)
