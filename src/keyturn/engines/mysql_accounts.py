"""MySQL/MariaDB account rows, pure: ``user@host`` names, the native password hash, grant-table
rows and which more specific row shadows another, error-number classification and snapshot
data. No I/O; ``keyturn.engines.mysql`` does the talking. Imports: ``keyturn.core`` and
PyMySQL's error types.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import pymysql  # type: ignore[import-untyped]

from keyturn.core.engine_ports import CredentialSnapshot
from keyturn.core.errors import (
    AccountExists,
    AccountPermissionDenied,
    AccountShadowed,
    EngineError,
    EngineRejected,
    EngineUnavailable,
    InternalError,
    UnsupportedFeature,
)
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
    role: bool = False
    #: Every (plugin, authentication string) the row accepts, in order: more than one for a
    #: MariaDB authentication chain (``IDENTIFIED VIA a OR b``); empty means just
    #: (``plugin``, ``auth``).
    alternatives: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return f"{self.user}@{self.host}"

    @property
    def chained(self) -> bool:
        return len(self.alternatives) > 1

    @property
    def credentials(self) -> tuple[tuple[str, str], ...]:
        return self.alternatives or ((self.plugin, self.auth),)


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
    first = (str(data.get("plugin") or NATIVE_PLUGIN), str(data.get("authentication_string") or ""))
    # ``auth_or`` lists a chain's alternatives; ``{}`` stands for the top-level pair (a row
    # once altered keeps ``[{}]``: one alternative, no chain).
    chain = data.get("auth_or")
    alternatives: list[tuple[str, str]] = []
    for item in chain if isinstance(chain, list) else []:
        if isinstance(item, dict) and item:
            plugin = str(item.get("plugin") or NATIVE_PLUGIN)
            alternatives.append((plugin, str(item.get("authentication_string") or "")))
        else:
            alternatives.append(first)
    return Row(
        user=text(user),
        host=text(host),
        plugin=first[0],
        auth=first[1],
        locked=bool(data.get("account_locked", False)),
        role=bool(data.get("is_role", False)),
        alternatives=tuple(alternatives) if len(alternatives) > 1 else (),
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


def snapshot_of(account: str, row: Row, secondary: bool = False) -> CredentialSnapshot:
    """What a rollback needs: the row's credential(s) as stored (``secondary``: MySQL 8 holds
    a retained password beside it, which no statement can put back)."""
    data: dict[str, Any] = {"plugin": row.plugin, "authentication_string": row.auth}
    if row.chained:
        data["alternatives"] = [list(pair) for pair in row.alternatives]
    if secondary:
        data["secondary"] = True
    return CredentialSnapshot(account=account, data=data)


def snapshot_data(snapshot: CredentialSnapshot) -> tuple[tuple[str, str], ...]:
    """The (plugin, authentication string) alternatives a snapshot holds, checked."""
    plugin = snapshot.data.get("plugin")
    auth = snapshot.data.get("authentication_string")
    if not isinstance(plugin, str) or not isinstance(auth, str):
        raise InternalError("the credential snapshot is not one of MySQL")
    found = [(plugin, auth)]
    chain = snapshot.data.get("alternatives")
    if chain is not None:
        if not isinstance(chain, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(v, str) for v in p)
            for p in chain
        ):
            raise InternalError("the credential snapshot is not one of MySQL")
        found = [(str(p[0]), str(p[1])) for p in chain]
    for name, _ in found:
        if not PLUGIN_NAME.fullmatch(name):
            raise InternalError("the credential snapshot names an invalid plugin")
    return tuple(found)


def alter_statement(mariadb: bool, alternatives: Sequence[tuple[str, str]]) -> str:
    """``ALTER USER %s@%s IDENTIFIED ...`` for these alternatives, their strings left as
    ``%s`` for the driver to escape (plugin names are checked identifiers). MySQL has no
    chains."""
    if not alternatives:
        raise InternalError("an account needs a credential")
    for plugin, _ in alternatives:
        if not PLUGIN_NAME.fullmatch(plugin):
            raise InternalError("an invalid authentication plugin name")
    if not mariadb:
        if len(alternatives) != 1:
            raise UnsupportedFeature("MySQL has no authentication chains")
        return f"ALTER USER %s@%s IDENTIFIED WITH {alternatives[0][0]} AS %s"
    chain = " OR ".join(f"{plugin} USING %s" for plugin, _ in alternatives)
    return f"ALTER USER %s@%s IDENTIFIED VIA {chain}"


def version_at_least(version: str, wanted: tuple[int, ...]) -> bool:
    """Whether a ``VERSION()`` string (``10.11.6-MariaDB-log``, ``8.0.36``) is ``wanted`` or
    later."""
    numbers = re.match(r"(\d+)\.(\d+)\.?(\d*)", version)
    if numbers is None:
        return False
    found = tuple(int(n) for n in numbers.groups() if n)
    return found >= wanted


#: ``CREATE USER`` with the password as its native hash (MariaDB ``VIA ... USING``, MySQL
#: ``WITH ... AS``: the forms a reset's ``ALTER USER`` uses; MySQL 8 has no ``BY PASSWORD``).
_CREATE_MARIADB: Final = f"CREATE USER %s@%s IDENTIFIED VIA {NATIVE_PLUGIN} USING %s"
_CREATE_MYSQL: Final = f"CREATE USER %s@%s IDENTIFIED WITH {NATIVE_PLUGIN} AS %s"
#: Without ``IF EXISTS``: its note on a missing row would come back as a driver warning; error
#: 1396 says the same and is taken as "nothing to drop".
DROP_USER: Final = "DROP USER %s@%s"


def create_statement(mariadb: bool) -> str:
    """``CREATE USER %s@%s IDENTIFIED ... %s``; user, host and hash are the driver's to escape.
    No ``GRANT`` follows: the account has ``USAGE`` only (it logs in, and reads nothing until
    the operator grants it something), read-only or not."""
    return _CREATE_MARIADB if mariadb else _CREATE_MYSQL


def check_creatable(user: str, host: str, rows: Iterable[Row], endpoint: str) -> None:
    """Refuse to create ``user@host`` when that row (or a role of that name) exists
    (``AccountExists``), or when a more specific row would take its logins
    (``AccountShadowed``: its password would then never be the one that logs in)."""
    rows = list(rows)
    if any(r.user == user and r.host.lower() == host.lower() for r in rows):
        raise AccountExists(f"the account already exists on {endpoint}")
    candidate = Row(user=user, host=host, plugin=NATIVE_PLUGIN, auth="", locked=False)
    shadow = shadowing_host(candidate, rows)
    if shadow is not None:
        raise AccountShadowed(
            f"a new account on {endpoint} would be shadowed by the more specific host {shadow!r}"
        )
