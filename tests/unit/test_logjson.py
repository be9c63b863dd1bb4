"""``KEYTURN_LOG_FORMAT=json`` without I/O: one JSON object a line with the record's time,
level, logger and message, the request context (request id, vendor, tenant, action, task),
``extra=`` fields, the process under ``--workers`` and the traceback; and redaction applied to
the message and every string field, as to text lines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from keyturn.core.logcontext import CURRENT_REQUEST, RequestContext
from keyturn.logjson import JsonFormatter
from keyturn.logredact import install

PASSWORD = "Sup3r-Secret-Passw0rd"


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(with_pid=True))
    logger = logging.getLogger("keyturn.test.logjson")
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.DEBUG)
    install(logger)  # the redaction filter, as serve installs it on the root's handlers
    yield logger, stream
    logger.handlers, logger.propagate = [], True


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_record_is_one_json_object(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    logger.info("task %s finished\nwith a newline", 7, extra={"task_id": 7, "duration": 0.25})
    [line] = lines(stream)
    assert line["level"] == "INFO" and line["logger"] == "keyturn.test.logjson"
    assert line["message"] == "task 7 finished\nwith a newline"
    assert line["task_id"] == 7 and line["duration"] == 0.25
    assert isinstance(line["pid"], int)
    assert datetime.fromisoformat(line["time"]).tzinfo is not None
    assert line["time"].endswith("Z")
    assert "request_id" not in line  # outside a call


def test_the_request_context_tags_every_record(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    context = RequestContext("req-1", "tencent", tenant="1300000001", action="redis:ResetPassword")
    token = CURRENT_REQUEST.set(context)
    try:
        logger.info("queued")
        context.task_id = 42
        logger.info("answered")
    finally:
        CURRENT_REQUEST.reset(token)
    first, second = lines(stream)
    assert first["request_id"] == "req-1" and first["vendor"] == "tencent"
    assert first["tenant"] == "1300000001" and first["action"] == "redis:ResetPassword"
    assert "task_id" not in first and second["task_id"] == 42


def test_every_string_field_is_redacted(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    logger.warning(
        "connecting to redis://admin:%s@10.0.0.1:6379",
        PASSWORD,
        extra={"detail": f"password={PASSWORD}", "node": f"redis://u:{PASSWORD}@h:1"},
    )
    try:
        raise ValueError(f"AUTH admin {PASSWORD}")
    except ValueError:
        logger.exception("failed")
    text = stream.getvalue()
    assert PASSWORD not in text
    warned, failed = lines(stream)
    assert "***" in warned["message"] and "***" in warned["detail"] and "***" in warned["node"]
    assert "ValueError" in failed["exception"] and failed["level"] == "ERROR"


def test_odd_extras_become_strings(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    logger.info("x", extra={"things": (1, 2), "none": None, "flag": True, "_private": 1})
    [line] = lines(stream)
    assert line["things"] == "(1, 2)" and line["none"] is None and line["flag"] is True
    assert "_private" not in line
