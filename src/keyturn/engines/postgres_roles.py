"""PostgreSQL login roles as a change sees them: the checks before it and the verifier it writes.

Before every change the target role is checked: it must exist, be able to log in (``LOGIN``, and
``VALID UNTIL``, which a password change does not reset, not in the past), and must not be a
superuser unless the administrator is one. The role and whether the node is a standby are read in
one round trip (``read_role``), and so is all a snapshot needs (``read_snapshot``). A new password
never reaches the server in clear: its SCRAM-SHA-256 verifier is computed by
``keyturn.engines.postgres_scram``. Snapshots keep the stored verifier from ``pg_authid``
(superuser only); ``snapshot_verifier`` reads it back for a restore. Imports: ``keyturn.core``,
``keyturn.engines`` and psycopg.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from psycopg import sql

from keyturn.core.engine_ports import CredentialSnapshot
from keyturn.core.errors import (
    AccountCannotLogin,
    AccountNotFound,
    AccountPermissionDenied,
    InternalError,
)
from keyturn.core.model import Node
from keyturn.engines.postgres_admin import PostgresAdmin, one
from keyturn.engines.postgres_overlap import Validity

#: ``Role``'s columns, for the role ``r``, and the one-row ``FROM`` that finds it (a missing
#: role still yields its row: NULLs).
_ROLE_COLUMNS: Final = (
    "SELECT pg_catalog.pg_is_in_recovery(), r.rolname IS NOT NULL, r.rolcanlogin,"
    " r.rolvaliduntil IS NOT NULL AND r.rolvaliduntil <= now(), r.rolsuper"
)
_ROLE_FROM: Final = (
    " FROM (VALUES (1)) AS one (x) LEFT JOIN pg_catalog.pg_roles r ON r.rolname = %s"
)
#: The role and whether the node is a standby, in one round trip: always exactly one row.
_ROLE: Final = sql.SQL(_ROLE_COLUMNS + _ROLE_FROM)
#: A snapshot's reading in one round trip: ``_ROLE``'s columns, the role's ``VALID UNTIL``, its
#: overlap partner ``p``'s ``postgres_overlap.validity`` and (superuser only) whether
#: ``pg_authid`` holds the role and its verifier.
_SNAPSHOT_ROLES: Final = (
    _ROLE_COLUMNS
    + ", r.rolvaliduntil::text, p.rolname IS NOT NULL, p.rolvaliduntil::text, p.rolsuper,"
    " p.rolvaliduntil IS NOT NULL AND p.rolvaliduntil <= now()"
)
_SNAPSHOT_PARTNER: Final = " LEFT JOIN pg_catalog.pg_roles p ON p.rolname = %s"
_SNAPSHOT: Final = sql.SQL(_SNAPSHOT_ROLES + _ROLE_FROM + _SNAPSHOT_PARTNER)
_SNAPSHOT_VERIFIER: Final = sql.SQL(
    _SNAPSHOT_ROLES
    + ", a.rolname IS NOT NULL, a.rolpassword"
    + _ROLE_FROM
    + _SNAPSHOT_PARTNER
    + " LEFT JOIN pg_catalog.pg_authid a ON a.rolname = %s"
)
#: ``probe_snapshot``: the server's version, then ``_SNAPSHOT``'s (or, superuser only,
#: ``_SNAPSHOT_VERIFIER``'s) columns.
_VERSION_THEN: Final = sql.SQL("SELECT current_setting('server_version'), s.* FROM (")
_PROBE_SNAPSHOT: Final = _VERSION_THEN + _SNAPSHOT + sql.SQL(") AS s")
_PROBE_VERIFIER: Final = _VERSION_THEN + _SNAPSHOT_VERIFIER + sql.SQL(") AS s")


@dataclass(frozen=True, slots=True)
class Role:
    """A role as ``_ROLE`` reads it, and whether the node it was read on is a standby."""

    standby: bool
    exists: bool
    can_login: bool
    expired: bool
    superuser: bool


async def read_role(admin: PostgresAdmin, account: str) -> Role:
    row = await one(admin.conn, _ROLE, (account,))
    if row is None:  # the query always yields one row; defensive only
        raise InternalError("the role query returned no row")
    return Role(*(bool(value) for value in row))


@dataclass(frozen=True, slots=True)
class Seen:
    """What a snapshot reads: the role, its ``VALID UNTIL``, its partner's ``validity``, and
    (``stored`` None when this admin may not read ``pg_authid``) whether ``pg_authid`` holds the
    role with its ``verifier``."""

    role: Role
    until: str | None
    partner: Validity
    stored: bool | None
    verifier: str | None = field(repr=False)


async def read_snapshot(admin: PostgresAdmin, account: str, partner: str) -> Seen:
    query = _SNAPSHOT_VERIFIER if admin.superuser else _SNAPSHOT
    return _seen(await one(admin.conn, query, _params(admin, account, partner)), admin.superuser)


async def probe_snapshot(admin: PostgresAdmin, account: str, partner: str) -> tuple[str, Seen]:
    """A reset's probe: the server's version and what ``read_snapshot`` reads, in one round
    trip (the task's snapshot follows within milliseconds: ``ProbedAccounts``)."""
    query = _PROBE_VERIFIER if admin.superuser else _PROBE_SNAPSHOT
    row = await one(admin.conn, query, _params(admin, account, partner))
    if row is None:  # the query always yields one row; defensive only
        raise InternalError("the probe query returned no row")
    return str(row[0]), _seen(row[1:], admin.superuser)


def _params(admin: PostgresAdmin, account: str, partner: str) -> tuple[str, ...]:
    return (account, partner, account) if admin.superuser else (account, partner)


def _seen(row: tuple[object, ...] | None, superuser: bool) -> Seen:
    if row is None:  # the query always yields one row; defensive only
        raise InternalError("the snapshot query returned no row")

    def text(value: object) -> str | None:
        return None if value is None else str(value)

    role = Role(*(bool(value) for value in row[:5]))
    partner_seen = (bool(row[6]), text(row[7]), bool(row[8]), bool(row[9]))
    if not superuser:
        return Seen(role, text(row[5]), partner_seen, None, None)
    return Seen(role, text(row[5]), partner_seen, bool(row[10]), text(row[11]))


def checked(node: Node, admin: PostgresAdmin, role: Role) -> Role:
    """``role``, if it exists, can log in and may be changed by this admin."""
    endpoint = node.address.endpoint
    if not role.exists:
        raise AccountNotFound(f"the role does not exist on {endpoint}")
    if not role.can_login:
        raise AccountCannotLogin(f"the role on {endpoint} has no LOGIN right")
    if role.expired:
        raise AccountCannotLogin(f"the role's VALID UNTIL on {endpoint} is in the past")
    if role.superuser and not admin.superuser:
        raise AccountPermissionDenied(
            f"the role on {endpoint} is a superuser and keyturn's admin is not"
        )
    return role


def snapshot_verifier(snapshot: CredentialSnapshot) -> tuple[bool, str | None]:
    """(readable, verifier) from a snapshot this engine took."""
    data = snapshot.data
    verifier = data.get("verifier")
    readable = data.get("verifier_readable", verifier is not None)
    if not isinstance(readable, bool) or not (verifier is None or isinstance(verifier, str)):
        raise InternalError("the credential snapshot is not one of PostgreSQL")
    return readable, verifier
