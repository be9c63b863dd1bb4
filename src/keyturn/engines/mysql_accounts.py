"""MySQL/MariaDB account rows, pure: ``user@host`` names, the native password hash, grant-table
rows and which more specific row shadows another, error-number classification and snapshot
data. No I/O; ``keyturn.engines.mysql`` does the talking. Imports: ``keyturn.core`` and
PyMySQL's error types.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import pymysql  # type: ignore[import-untyped]

from keyturn.core.errors import (
    AccountPermissionDenied,
    EngineError,
    EngineRejected,
    EngineUnavailable,
    InternalError,
    UnsupportedFeature,
)
from keyturn.core.ports import CredentialSnapshot
from keyturn.core.secrets import Secret

NATIVE_PLUGIN: Final = "mysql_native_password"

# Error numbers (server 1xxx/4xxx, client 2xxx).
ER_ACCESS_DENIED: Final = 1045
ER_CANNOT_USER: Final = 1396
ER_ACCOUNT_LOCKED: Final = 4151
_LOGIN_REFUSED: Final = frozenset({ER_ACCESS_DENIED, 1698, ER_ACCOUNT_LOCKED})
_PERMISSION: Final = frozenset({1044, 1142, 1227, 1370})
#: Server errors that mean the server is unhealthy or going away, not that it refused.
_UNAVAILABLE: Final = frozenset({1040, 1053, 1077, 1080, 1152, 1153, 1205, 1927, 4031})

PLUGIN_NAME: Final = re.compile(r"[A-Za-z0-9_]{1,64}")


def split_account(account: str) -> tuple[str, str]:
    """``"user@host"`` -> (user, host), split on the last ``@``; no ``@`` means host ``%``."""
    user, at, host = account.rpartition("@")
    if not at:
        return account, "%"
    return user, host


def native_hash(password: Secret) -> str:
    """The ``mysql_native_password`` hash of the password's UTF-8 bytes (as ``PASSWORD()``)."""
    inner = hashlib.sha1(password.reveal().encode()).digest()
    return "*" + hashlib.sha1(inner).hexdigest().upper()


def wire_password(password: Secret | None) -> str:
    """The password as PyMySQL must get it to send its UTF-8 bytes (it encodes Latin-1)."""
    if password is None:
        return ""
    return password.reveal().encode().decode("latin-1")


def errno_of(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def login_refused(exc: BaseException) -> bool:
    """Whether a failed connection attempt was a refused login (bad password, no such row)."""
    return isinstance(exc, pymysql.err.MySQLError) and errno_of(exc) in _LOGIN_REFUSED


def permission_denied(exc: BaseException) -> bool:
    """Whether a statement failed because the admin lacks a privilege."""
    return isinstance(exc, pymysql.err.MySQLError) and errno_of(exc) in _PERMISSION


def classify(exc: Exception, endpoint: str, action: str) -> EngineError | None:
    """PyMySQL exception -> domain error; copies only the error number, never the text."""
    if not isinstance(exc, pymysql.err.MySQLError):
        return None
    code = errno_of(exc)
    if code in _LOGIN_REFUSED:
        return EngineUnavailable(f"admin login to {endpoint} failed")
    if code in _PERMISSION:
        return AccountPermissionDenied(f"{endpoint} refused {action}: permission denied ({code})")
    if (
        isinstance(exc, pymysql.err.InterfaceError)
        or code is None
        or 2000 <= code < 3000
        or code in _UNAVAILABLE
    ):
        return EngineUnavailable(f"{endpoint} is not available ({code or type(exc).__name__})")
    return EngineRejected(f"{endpoint} refused {action} (error {code})")


@dataclass(frozen=True, slots=True)
class Row:
    """One account row of the grant tables."""

    user: str
    host: str
    plugin: str
    auth: str
    locked: bool
    chained: bool = False
    role: bool = False

    @property
    def name(self) -> str:
        return f"{self.user}@{self.host}"


def text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            raise UnsupportedFeature("the stored credential is not text") from None
    return "" if value is None else str(value)


def mariadb_row(user: Any, host: Any, priv: Any) -> Row:
    try:
        data = json.loads(text(priv) or "{}")
    except ValueError:
        raise InternalError("mysql.global_priv holds an unreadable row") from None
    if not isinstance(data, dict):
        raise InternalError("mysql.global_priv holds an unreadable row")
    return Row(
        user=text(user),
        host=text(host),
        plugin=str(data.get("plugin") or NATIVE_PLUGIN),
        auth=str(data.get("authentication_string") or ""),
        locked=bool(data.get("account_locked", False)),
        chained=bool(data.get("auth_or")),
        role=bool(data.get("is_role", False)),
    )


def mysql_row(user: Any, host: Any, plugin: Any, auth: Any, locked: Any) -> Row:
    return Row(
        user=text(user),
        host=text(host),
        plugin=text(plugin) or NATIVE_PLUGIN,
        auth=text(auth),
        locked=text(locked).upper() == "Y",
    )


def _rank(host: str) -> int:
    """How specific a host pattern is: 0 a literal host, 1 a pattern, 2 any host."""
    if host in ("%", ""):
        return 2
    if "%" in host or "_" in host or "/" in host:
        return 1
    return 0


def _like(pattern: str, value: str) -> bool:
    """SQL ``LIKE`` with ``%`` and ``_`` (backslash escapes), case-insensitive."""
    parts: list[str] = []
    chars = iter(pattern)
    for ch in chars:
        if ch == "\\":
            parts.append(re.escape(next(chars, "\\")))
        elif ch == "%":
            parts.append(".*")
        elif ch == "_":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    return re.fullmatch("".join(parts), value, re.IGNORECASE | re.DOTALL) is not None


def shadowing_host(target: Row, rows: Iterable[Row]) -> str | None:
    """The host of a row that takes logins ``target`` would otherwise match: a more specific
    host of the same user (or of the anonymous user) matching some of the same clients."""
    mine = _rank(target.host)
    for row in rows:
        if row.role or row.user not in (target.user, ""):
            continue
        if row.user == target.user and row.host.lower() == target.host.lower():
            continue
        theirs = _rank(row.host)
        if theirs >= mine:
            continue
        if theirs == 0 and _like(target.host, row.host):
            return row.host
        if theirs == 1 and mine == 2:
            return row.host
    return None


def snapshot_data(snapshot: CredentialSnapshot) -> tuple[str, str]:
    plugin = snapshot.data.get("plugin")
    auth = snapshot.data.get("authentication_string")
    if not isinstance(plugin, str) or not isinstance(auth, str):
        raise InternalError("the credential snapshot is not one of MySQL")
    if not PLUGIN_NAME.fullmatch(plugin):
        raise InternalError("the credential snapshot names an invalid plugin")
    return plugin, auth
