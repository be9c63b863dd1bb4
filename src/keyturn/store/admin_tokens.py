"""Admin tokens in the store: the ``AdminTokenRepo`` port on the ``admin_tokens`` table.

Only the token's SHA-256 is stored (``keyturn.core.admin_tokens`` says why that is enough);
a look-up is one equality on its unique index. Revocation sets ``revoked_at`` (the row stays,
so lists and the audit log can still name the token). Imports: ``keyturn.core``, SQLAlchemy,
this package and the standard library.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa

from keyturn.core.admin_tokens import AdminToken
from keyturn.store.base import SqlDatabase, guarded
from keyturn.store.schema import admin_tokens

_BY_HASH: Final = sa.select(admin_tokens).where(admin_tokens.c.token_hash == sa.bindparam("digest"))


def _token(row: Any) -> AdminToken:
    return AdminToken(
        id=row.id,
        name=row.name,
        tenant_id=row.tenant_id,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


class SqlAdminTokens:
    """Admin tokens in ``db``, shared by every process on the store."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    @guarded
    async def put_admin_token(self, token: AdminToken, digest: str) -> None:
        async with self._db.write() as conn:
            if token.tenant_id is not None:
                await self._db.require_tenant(conn, token.tenant_id)
            await conn.execute(
                sa.insert(admin_tokens).values(
                    id=token.id,
                    token_hash=digest,
                    name=token.name,
                    tenant_id=token.tenant_id,
                    created_at=token.created_at,
                )
            )

    @guarded
    async def admin_token_by_hash(self, digest: str) -> AdminToken | None:
        async with self._db.read() as conn:
            row = (await conn.execute(_BY_HASH, {"digest": digest})).first()
        return None if row is None else _token(row)

    @guarded
    async def list_admin_tokens(self) -> list[AdminToken]:
        query = sa.select(admin_tokens).order_by(admin_tokens.c.created_at, admin_tokens.c.id)
        async with self._db.read() as conn:
            return [_token(row) for row in (await conn.execute(query)).all()]

    @guarded
    async def revoke_admin_token(self, token_id: str, at: datetime) -> bool:
        async with self._db.write() as conn:
            result = await conn.execute(
                sa.update(admin_tokens)
                .where(admin_tokens.c.id == token_id, admin_tokens.c.revoked_at.is_(None))
                .values(revoked_at=at)
            )
            return result.rowcount > 0

    @guarded
    async def touch_admin_token(self, token_id: str, at: datetime) -> None:
        # Not durable: a lost "last used" time after a crash costs nothing.
        async with self._db.write(durable=False) as conn:
            await conn.execute(
                sa.update(admin_tokens).where(admin_tokens.c.id == token_id).values(last_used_at=at)
            )
