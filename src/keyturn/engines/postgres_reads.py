"""What the PostgreSQL engine reads without changing anything: the health probe and the roles.

A probe is a health check, so it always makes a round trip, even on a pooled connection, and
exactly one: the server's version and whether the node is a standby, and, asked about a role,
all a snapshot of it reads (``postgres_roles.probe_snapshot``): whether it exists and is a
superuser, which the service protects, and its stored verifier. Whoever probes may keep the
standby flag and the role for the task that follows (``probed_roles``). The account list is
every role that may log in. This module imports only ``keyturn.core``, ``keyturn.engines`` and
psycopg.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from psycopg import sql

from keyturn.core.engine_ports import AccountInfo, EngineInfo
from keyturn.engines import postgres_overlap
from keyturn.engines.postgres_admin import PostgresAdmin, one
from keyturn.engines.postgres_roles import Seen, probe_snapshot
from keyturn.engines.sql_engine import probed

#: A probe without a role: the version and whether the node is a standby.
_PROBE: Final = sql.SQL("SELECT current_setting('server_version'), pg_catalog.pg_is_in_recovery()")
_ACCOUNTS: Final = sql.SQL(
    "SELECT r.rolname, r.rolvaliduntil IS NULL OR r.rolvaliduntil > now()"
    " FROM pg_catalog.pg_roles r WHERE r.rolcanlogin ORDER BY r.rolname"
)


@dataclass(frozen=True, slots=True)
class Probed:
    """What a probe found: ``standby`` when it could tell, ``seen`` when it read a role."""

    info: EngineInfo
    standby: bool | None = None
    seen: Seen | None = None


async def probe(admin: PostgresAdmin, account: str | None) -> Probed:
    """Probe the node behind ``admin`` (its version is updated), about ``account`` if any."""
    if account is None:
        row = await one(admin.conn, _PROBE)
        if row is None:  # the query always yields one row; defensive only
            return Probed(probed(admin.version, superuser=None, exists=None))
        admin.version = str(row[0])
        return Probed(probed(admin.version, superuser=None, exists=None), bool(row[1]))
    admin.version, seen = await probe_snapshot(admin, account, postgres_overlap.partner(account))
    role = seen.role
    exists: bool | None = role.exists
    if exists is False and account.endswith(postgres_overlap.SUFFIX):
        exists = None  # a twin role is made by its overlap's first ADD: no answer
    superuser = role.superuser if role.exists else None
    return Probed(probed(admin.version, superuser=superuser, exists=exists), role.standby, seen)


async def accounts(admin: PostgresAdmin) -> list[AccountInfo]:
    """Every role that may log in, by name; enabled unless its ``VALID UNTIL`` has passed."""
    async with admin.conn.cursor() as cur:
        await cur.execute(_ACCOUNTS)
        rows = await cur.fetchall()
    return [
        AccountInfo(name=str(name), enabled=bool(valid), password_free=False)
        for name, valid in rows
    ]
