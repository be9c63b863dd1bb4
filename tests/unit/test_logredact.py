"""Unit tests of ``keyturn.logredact``: what is masked, what is left alone, and the filter on
whole records (arguments, tracebacks, stacks) as ``keyturn serve`` installs it."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from keyturn.logredact import MASK, RedactingFilter, install, redact

SECRET = "Kt-s3cr3t-Pw_9a"

MASKED = [
    (f"connecting to redis://default:{SECRET}@127.0.0.1:6379/0", "redis://default:***@"),
    (f"rediss://:{SECRET}@host:6380", "rediss://:***@host"),
    (f"postgresql://postgres:{SECRET}@127.0.0.1:5432/db?sslmode=verify-full", "postgres:***@"),
    (f"password={SECRET} user=bob", "password=*** user=bob"),
    (f'{{"Password": "{SECRET}", "InstanceId": "crs-1234"}}', '"Password": "***"'),
    (f"new_password='{SECRET}' ok", "new_password='***' ok"),
    (f"AccountPassword: {SECRET}", "AccountPassword: ***"),
    (f"secret_key={SECRET}&x=1", "secret_key=***&x=1"),
    (f"token: {SECRET}", "token: ***"),
    (
        "Authorization: TC3-HMAC-SHA256 Credential=AKIDx/2026-01-01/redis/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={'ab' * 32}",
        "Authorization: ***",
    ),
    (f"signature={SECRET}&x=1", "signature=***&x=1"),
    (f"ACL SETUSER default resetpass >{SECRET} on", ">*** on"),
    (f"CONFIG SET masterauth {SECRET}", "masterauth ***"),
    (f"SENTINEL SET mymaster auth-pass {SECRET}", "auth-pass ***"),
    (f"AUTH default {SECRET}", "AUTH ***"),
    ("sealed v1:abcd1234:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=", "v1:***"),
    ("secret Q6JkX7p3b7lKrq0M26O3f1oepxD0gfdAbS1b4A5N end", "secret *** end"),
    (f"digest {'a94a8fe5cc' * 5}", "digest ***"),
    ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----", MASK),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEvQIBADANBg\n", "RSA PRIVATE KEY----- ***"),
]

KEPT = [
    "task 5 of instance crs-5a4py64p succeeded (password verified on 2 nodes)",
    "access key AKIDhOY003iXKWe6WyDrSRXuWOHsgzEyd2ER signed the request",
    "opened /tmp/pytest-of-root/pytest-121/test_environment_key0/data/keyturn.db",
    "request 6f1c2d4e-1111-2222-3333-444455556666 done",
    "password rules broken: 8-32 characters",
    "x > 5 and a>b",
    "serving on https://127.0.0.1:9000",
    "created master key data/master.key (key id d89ed9ef)",
    "node redis://default@127.0.0.1:6379 (no password in the URL)",
]


@pytest.mark.parametrize(("text", "shown"), MASKED)
def test_masks_secret_shaped_text(text: str, shown: str) -> None:
    out = redact(text)
    assert shown in out
    assert SECRET not in out
    assert "MIIEvQIBADANBg" not in out and "Q6JkX7p3b7" not in out and "QUJDREVG" not in out


@pytest.mark.parametrize("text", KEPT)
def test_leaves_ordinary_text_alone(text: str) -> None:
    assert redact(text) == text


def test_empty() -> None:
    assert redact("") == ""


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("keyturn.test.redaction")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    install(log)
    yield log, stream
    log.removeHandler(handler)


def test_filter_redacts_arguments_tracebacks_and_stacks(
    logger: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = logger
    log.info("login to %s failed", f"redis://app:{SECRET}@10.0.0.1:6379")
    try:
        raise RuntimeError(f"driver said: password={SECRET}")
    except RuntimeError:
        log.exception("unexpected error for %s", "crs-abcd1234")
    log.warning("here", stack_info=True, extra={"password": SECRET})
    text = stream.getvalue()
    assert SECRET not in text
    assert "redis://app:***@10.0.0.1:6379" in text
    assert "RuntimeError: driver said: password=***" in text
    assert "unexpected error for crs-abcd1234" in text and "Stack (most recent call last)" in text


def test_a_record_that_does_not_format_is_kept(
    logger: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = logger
    log.info("two %s %s", "args only one")
    assert "<unformattable log message from keyturn.test.redaction>" in stream.getvalue()


def test_install_is_idempotent(logger: tuple[logging.Logger, io.StringIO]) -> None:
    log, _ = logger
    first = install(log)
    assert install(log) is first
    handler = log.handlers[0]
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
