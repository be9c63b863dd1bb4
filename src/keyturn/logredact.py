"""Log redaction: a second line of defence that masks anything secret-shaped in log records.

keyturn never logs a secret on purpose (passwords travel as ``Secret``, driver errors are
reduced to code words); this filter catches what slips through anyway — a library's debug line,
a traceback quoting a URL. ``redact`` masks: the password of ``scheme://user:password@`` URLs;
the value after ``password=``, ``"Password": "..."``, ``secret=``, ``token=`` and similar keys;
``Authorization`` header values and ``Signature=`` values; Redis command text (``>password``
ACL rules, ``masterauth``/``requirepass``/``auth-pass`` values, ``AUTH`` arguments); PEM
private-key blocks; sealed tokens (``v1:<key id>:...``); and long key-like runs (40+ hex
digits, or 40+ base64 characters mixing upper case, lower case and digits). File paths, key
ids (``AKID`` + 32 characters), request ids and ordinary words are left alone. Bounded
repetitions keep it linear on hostile input. ``RedactingFilter`` applies it to the whole
formatted record (message, arguments, traceback, stack); ``install`` adds it to every handler of
the root logger, which is where all of keyturn's and uvicorn's records end up. Pure standard
library.
"""

from __future__ import annotations

import logging
import re
from typing import Final

MASK: Final = "***"
# Every repetition that can start at many positions is bounded ({0,32}), so a long hostile
# line costs linear time, not quadratic.

_KEYS: Final = (
    r"[a-z_-]{0,32}pass(?:word|wd)?|pwd|masterauth|requirepass|auth-pass"
    r"|[a-z_-]{0,32}secret(?:_?key)?"
    r"|secretkey|sk|token|api_?key|private_?key|credential_?secret"
)
#: A quoted or bare value after a secret-named key (``password=x``, ``"Password": "x"``).
_KEY_VALUE: Final = re.compile(
    rf"""(?ix)
    (?P<key>(?<![a-z0-9])["']?(?:{_KEYS})["']?\s*(?:=|:)\s*)
    (?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,;&)}}\]]+)
    """
)
_URL_USERINFO: Final = re.compile(
    r"(?i)\b([a-z][a-z0-9+.-]{0,31}://[^\s:/@]{0,256}:)[^\s@/]{1,256}@"
)
_AUTHORIZATION: Final = re.compile(
    r"""(?i)(authorization["']?\s*[:=]\s*)("[^"]*"|'[^']*'|[^\r\n"']+)"""
)
_SIGNATURE: Final = re.compile(r"(?i)\b(signature\s*[=:]\s*)[A-Za-z0-9+/=%_-]+")
_PEM_KEY: Final = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)"
)
#: Redis command text: an ACL rule adding a password (``>pw``), a password-valued setting
#: followed by its value (``masterauth pw``, ``SENTINEL SET m auth-pass pw``), ``AUTH [user] pw``.
_ACL_RULE: Final = re.compile(r"(?<=\s)>(?=\S)\S+")
_SPACED_SETTING: Final = re.compile(r"(?i)\b(masterauth|requirepass|auth-pass)(\s+)\S+")
_AUTH_COMMAND: Final = re.compile(r"\bAUTH\s+\S+(?:\s+\S+)?")
_SEALED: Final = re.compile(r"\bv1:[0-9a-f]{8}:[A-Za-z0-9_=-]{16,}")
#: A long run of token characters not inside a path (a ``/`` before it is a path segment).
_LONG_RUN: Final = re.compile(r"(?<![A-Za-z0-9+/=_.-])[A-Za-z0-9+_-][A-Za-z0-9+/=_-]{39,}")
_HEX: Final = re.compile(r"[0-9a-fA-F]+=*")


def _looks_like_key(run: str) -> bool:
    if _HEX.fullmatch(run):
        return True
    if "/" in run and run.count("/") * 8 > len(run):
        return False  # a path-like run, not base64
    return (
        any(c.isupper() for c in run)
        and any(c.islower() for c in run)
        and any(c.isdigit() for c in run)
    )


def _mask_key_value(match: re.Match[str]) -> str:
    value = match.group("value")
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match.group('key')}{quote}{MASK}{quote}"


def _mask_run(match: re.Match[str]) -> str:
    run = match.group(0)
    return MASK if _looks_like_key(run) else run


def redact(text: str) -> str:
    """``text`` with every secret-shaped part replaced by ``***``."""
    if not text:
        return text
    text = _PEM_KEY.sub(f"-----BEGIN \\1PRIVATE KEY----- {MASK}", text)
    text = _AUTHORIZATION.sub(lambda m: f"{m.group(1)}{MASK}", text)
    text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    text = _KEY_VALUE.sub(_mask_key_value, text)
    text = _SIGNATURE.sub(lambda m: f"{m.group(1)}{MASK}", text)
    text = _ACL_RULE.sub(f">{MASK}", text)
    text = _SPACED_SETTING.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = _AUTH_COMMAND.sub(f"AUTH {MASK}", text)
    text = _SEALED.sub(f"v1:{MASK}", text)
    return _LONG_RUN.sub(_mask_run, text)


class RedactingFilter(logging.Filter):
    """Rewrite each record so that its message, traceback and stack are redacted. It never
    drops a record and never raises: a record whose arguments do not format is kept, with a
    note instead of its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            message = f"<unformattable log message from {record.name}>"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install(logger: logging.Logger | None = None) -> RedactingFilter:
    """Add one ``RedactingFilter`` to every handler of ``logger`` (default: the root logger);
    idempotent."""
    target = logger or logging.getLogger()
    found = RedactingFilter()
    for handler in target.handlers:
        existing = [f for f in handler.filters if isinstance(f, RedactingFilter)]
        if existing:
            found = existing[0]
            continue
        handler.addFilter(found)
    return found
