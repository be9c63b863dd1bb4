"""PostgreSQL overlap rotations: two login roles with the same grants, alternating.

A role has one password, so an overlap keeps two roles (as Alibaba KMS ``DoubleUsers`` and the
"alternating users" strategy of other secret managers do): the account ``app`` and its twin
``app_clone`` (``SUFFIX``; ``partner`` maps each to the other). Each rotation gives the new
password to the role that does not hold the current one, while the other keeps working, so
applications switch at their own pace.

The twin is made by the first ``ADD`` that names it: ``CREATE ROLE app_clone LOGIN PASSWORD
<verifier> VALID UNTIL 'infinity' IN ROLE app`` and ``ALTER ROLE app_clone SET role = app``,
so its sessions act as ``app`` itself (same privileges, and objects they create are owned by
``app``), while ``session_user`` and ``pg_stat_activity.usename`` still say who logged in. A
superuser's twin is not made. An ``ADD`` to an existing role sets its verifier, and ``VALID UNTIL
'infinity'`` when an earlier ``KEEP_ONLY`` expired it. ``KEEP_ONLY`` ends the overlap:
the kept role keeps its password and the other one's password expires at once (``VALID UNTIL
'now'``: the role and its grants stay for its next turn; sessions open on it are not ended,
``end_sessions`` does that). So, as on the other engines, only the new password logs in after
the grace period. Snapshots record both roles' ``VALID UNTIL`` so a rollback puts them back (and
drops a twin the change made). Names are ``psycopg.sql.Identifier``s, verifiers ``Literal``s.
Imports: ``keyturn.core`` and psycopg.
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias

from psycopg import sql

from keyturn.core.errors import AccountNotFound, AccountPermissionDenied, EngineRejected

#: The twin's name is the account's with this suffix (63 bytes at most, PostgreSQL's limit).
SUFFIX: Final = "_clone"
MAX_NAME_BYTES: Final = 63

VALIDITY: Final = sql.SQL(
    "SELECT r.rolname, r.rolvaliduntil::text, r.rolsuper,"
    " r.rolvaliduntil IS NOT NULL AND r.rolvaliduntil <= now()"
    " FROM pg_catalog.pg_roles r WHERE r.rolname = %s"
)
_CREATE_TWIN: Final = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} VALID UNTIL 'infinity' IN ROLE {}")
_ACT_AS: Final = sql.SQL("ALTER ROLE {} SET role = {}")
_SET: Final = sql.SQL("ALTER ROLE {} PASSWORD {} VALID UNTIL 'infinity'")
_PASSWORD: Final = sql.SQL("ALTER ROLE {} PASSWORD {}")
_EXPIRE: Final = sql.SQL("ALTER ROLE {} VALID UNTIL 'now'")
_VALID_UNTIL: Final = sql.SQL("ALTER ROLE {} VALID UNTIL {}")
_NO_EXPIRY: Final = sql.SQL("ALTER ROLE {} VALID UNTIL 'infinity'")
_DROP: Final = sql.SQL("DROP ROLE IF EXISTS {}")


#: A role as ``VALIDITY`` reads it: (exists, VALID UNTIL as text or None, superuser, expired).
Validity: TypeAlias = tuple[bool, str | None, bool, bool]


def partner(account: str) -> str:
    """``app`` -> ``app_clone`` and ``app_clone`` -> ``app``."""
    if account.endswith(SUFFIX) and len(account) > len(SUFFIX):
        return account[: -len(SUFFIX)]
    return account + SUFFIX


async def validity(conn: Any, role: str) -> Validity:
    """(exists, VALID UNTIL as text or None, superuser, expired)."""
    async with conn.cursor() as cur:
        await cur.execute(VALIDITY, (role,))
        row = await cur.fetchone()
    if row is None:
        return False, None, False, False
    return True, None if row[1] is None else str(row[1]), bool(row[2]), bool(row[3])


def snapshot_extra(account: str, until: str | None, twin: Validity) -> dict[str, Any]:
    """What a snapshot of ``account`` adds for overlaps: both roles' ``VALID UNTIL``
    (``until``: the account's, ``twin``: the partner role's ``validity``, both read by the
    snapshot's one query)."""
    other = partner(account)
    other_exists, other_until, _, _ = twin
    return {
        "valid_until": until,
        "partner": other,
        "partner_exists": other_exists,
        "partner_valid_until": other_until,
    }


def absent_snapshot(account: str) -> dict[str, Any]:
    """A twin that does not exist yet: its rollback drops it."""
    return {"absent": True, "partner": partner(account), "verifier_readable": True}


async def add(conn: Any, account: str, verifier: str, endpoint: str) -> None:
    """``account`` gets ``verifier`` (its twin made first if it is missing)."""
    exists, _, _, expired = await validity(conn, account)
    if exists:
        # An earlier overlap's end expired it: its new turn lifts that (else left as it is).
        statement = _SET if expired else _PASSWORD
        await conn.execute(statement.format(sql.Identifier(account), sql.Literal(verifier)))
        return
    base = partner(account)
    base_exists, _, base_super, _ = await validity(conn, base)
    if not base_exists:
        raise AccountNotFound(f"neither the role nor its twin exists on {endpoint}")
    if base_super:
        raise AccountPermissionDenied(f"keyturn makes no twin of a superuser on {endpoint}")
    if len(account.encode()) > MAX_NAME_BYTES:
        raise EngineRejected(f"the twin role's name would be too long on {endpoint}")
    async with conn.transaction():
        await conn.execute(
            _CREATE_TWIN.format(
                sql.Identifier(account), sql.Literal(verifier), sql.Identifier(base)
            )
        )
        await conn.execute(_ACT_AS.format(sql.Identifier(account), sql.Identifier(base)))


async def expire_partner(conn: Any, account: str) -> None:
    """The other role's password stops working now (the role stays)."""
    other = partner(account)
    exists, _, _, _ = await validity(conn, other)
    if exists:
        await conn.execute(_EXPIRE.format(sql.Identifier(other)))


async def restore_extra(conn: Any, account: str, data: dict[str, Any]) -> bool:
    """Put back what ``snapshot_extra``/``absent_snapshot`` recorded; True when the role was
    absent (dropped here, nothing else to restore)."""
    if data.get("absent"):
        await conn.execute(_DROP.format(sql.Identifier(account)))
        return True
    if "valid_until" in data:
        await _set_until(conn, account, data.get("valid_until"))
    other = data.get("partner")
    if isinstance(other, str) and data.get("partner_exists") and (await validity(conn, other))[0]:
        await _set_until(conn, other, data.get("partner_valid_until"))
    return False


async def _set_until(conn: Any, role: str, until: object) -> None:
    """Put back a recorded ``VALID UNTIL`` unless it is what the role has (None, no expiry,
    cannot be written back: 'infinity' is the same for logins)."""
    if (await validity(conn, role))[1] == until:
        return
    if until is None:
        await conn.execute(_NO_EXPIRY.format(sql.Identifier(role)))
    else:
        await conn.execute(_VALID_UNTIL.format(sql.Identifier(role), sql.Literal(str(until))))
