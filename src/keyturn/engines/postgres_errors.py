"""PostgreSQL failures as domain errors: which psycopg exceptions mean an unreachable or
unhealthy node, a refused login, a missing privilege or a refusal of the statement.

Only SQLSTATEs and exception types leave this module; libpq's message text is inspected (it is
the only signal of a refused login) but never copied, since it can echo a role name or worse.
It imports only ``keyturn.core`` and psycopg.
"""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors

from keyturn.core.errors import (
    AccountPermissionDenied,
    EngineError,
    EngineRejected,
    EngineUnavailable,
)


def _message(exc: psycopg.Error) -> bytes:
    """The libpq text of a failed connection attempt: inspected here, never copied."""
    if exc.pgconn is not None and exc.pgconn.error_message:
        return exc.pgconn.error_message
    return str(exc).encode(errors="replace")


def login_refused(exc: BaseException) -> bool:
    """Whether a failed connection attempt was a refused login (wrong password, unknown role,
    no ``pg_hba.conf`` entry) rather than an unreachable or unhealthy server. libpq reports no
    SQLSTATE for these, so its (English) message is the only signal."""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    text = _message(exc)
    return b"authentication failed" in text or b"pg_hba.conf" in text


def classify(exc: Exception, endpoint: str, action: str) -> EngineError | None:
    """psycopg exception -> domain error; never copies the exception's text, only a SQLSTATE."""
    if not isinstance(exc, psycopg.Error):
        return None
    state = exc.sqlstate
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return AccountPermissionDenied(f"{endpoint} refused {action}: permission denied ({state})")
    if state is None and isinstance(exc, psycopg.OperationalError):
        if login_refused(exc):
            return EngineUnavailable(f"admin login to {endpoint} failed")
        return EngineUnavailable(f"{endpoint} is not reachable")
    if isinstance(exc, psycopg.InterfaceError) or (state or "")[:2] in ("08", "53", "57"):
        # Connection exceptions, insufficient resources, operator intervention (shutdown).
        return EngineUnavailable(f"{endpoint} is not available ({state or type(exc).__name__})")
    if state is None:
        return EngineRejected(f"{action} on {endpoint} failed ({type(exc).__name__})")
    return EngineRejected(f"{endpoint} refused {action} (SQLSTATE {state})")
