"""PostgreSQL login roles keyturn creates (a ``[[secrets]]`` account "created when missing",
the vendors' ``CreateAccount``) and drops again (the rollback of a half-done creation).

A role is made on the primary only, in one transaction, as ``CREATE ROLE <name> WITH LOGIN
NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD <verifier>``: the
password reaches the server only as its SCRAM-SHA-256 verifier, computed client-side like a
reset's, and the role gets no attribute that controls the server. It gets no grant either:
it can log in to every database whose ``CONNECT`` is granted to ``PUBLIC`` (the default) and
read or write what ``PUBLIC`` may; the operator grants the rest. ``read_only`` adds ``ALTER
ROLE <name> SET default_transaction_read_only = on``, so its sessions start read-only (a
default a session may change, not an enforcement: grant only ``SELECT`` for that). Standbys
receive the role through the WAL. Names are ``psycopg.sql.Identifier``s and verifiers
``Literal``s. Imports: ``keyturn.core`` and psycopg.
"""

from __future__ import annotations

from typing import Any, Final

from psycopg import errors as pg_errors
from psycopg import sql

from keyturn.core.errors import AccountExists, AccountPermissionDenied, EngineRejected

#: PostgreSQL truncates longer names (NAMEDATALEN - 1 bytes): refuse them instead.
MAX_NAME_BYTES: Final = 63

_CREATE: Final = sql.SQL(
    "CREATE ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
    " INHERIT PASSWORD {}"
)
_READ_ONLY: Final = sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on")
_DROP: Final = sql.SQL("DROP ROLE IF EXISTS {}")


async def create(conn: Any, account: str, verifier: str, *, read_only: bool, endpoint: str) -> None:
    """Create the login role ``account`` with ``verifier``; ``AccountExists`` if a role of that
    name exists (it is never changed)."""
    if not account or len(account.encode()) > MAX_NAME_BYTES:
        raise EngineRejected(f"the role's name is empty or too long for {endpoint}")
    name = sql.Identifier(account)
    try:
        async with conn.transaction():
            await conn.execute(_CREATE.format(name, sql.Literal(verifier)))
            if read_only:
                await conn.execute(_READ_ONLY.format(name))
    except pg_errors.DuplicateObject:
        raise AccountExists(f"the role already exists on {endpoint}") from None
    except pg_errors.InsufficientPrivilege:
        raise AccountPermissionDenied(
            f"keyturn's admin may not create roles on {endpoint} (it needs CREATEROLE)"
        ) from None


async def drop(conn: Any, account: str, endpoint: str) -> None:
    """Drop the role ``account`` (absent is no error)."""
    try:
        await conn.execute(_DROP.format(sql.Identifier(account)))
    except pg_errors.InsufficientPrivilege:
        raise AccountPermissionDenied(
            f"keyturn's admin may not drop the role on {endpoint}"
        ) from None
