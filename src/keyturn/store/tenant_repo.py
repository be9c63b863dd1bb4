"""``SqlTenantRepo``: the ``TenantRepo`` and ``KeyRepo`` ports, tenants and their access keys.

A tenant is removed only once it has no access key and no instance left. An access key's
signing secret is sealed under a context naming its row before it reaches SQL; a key is read
with its policies resolved (``keyturn.store.policies``), a listing with all of them in one go.
``get_access_key`` runs on every signed request, so its statement is built once. Imports:
``keyturn.core``, SQLAlchemy, this package and the standard library.
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa

from keyturn.core.errors import Conflict
from keyturn.core.model import AccessKey, KeySource, Tenant
from keyturn.core.secrets import Secret
from keyturn.store import rows
from keyturn.store.base import SqlDatabase, guarded, upsert_insert
from keyturn.store.policies import SqlPolicies
from keyturn.store.schema import access_keys, instances, tenants

#: A hot read, built once (see ``task_repo``).
_GET_ACCESS_KEY: Final = sa.select(access_keys).where(access_keys.c.id == sa.bindparam("id"))


class SqlTenantRepo:
    """Tenants and access keys on ``db``; ``policies`` resolves what a key attaches."""

    def __init__(self, db: SqlDatabase, policies: SqlPolicies) -> None:
        self._db = db
        self._policies = policies

    @guarded
    async def put_tenant(self, tenant: Tenant, source: KeySource) -> None:
        async with self._db.write() as conn:
            stmt = upsert_insert(conn, tenants).values(
                id=tenant.id, name=tenant.name, source=source.value, created_at=self._db.now()
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[tenants.c.id],
                set_={"name": stmt.excluded.name, "source": stmt.excluded.source},
            )
            await conn.execute(stmt)

    @guarded
    async def list_tenants(self) -> list[Tenant]:
        async with self._db.read() as conn:
            result = await conn.execute(
                sa.select(tenants.c.id, tenants.c.name).order_by(tenants.c.id)
            )
            return [Tenant(id=row.id, name=row.name) for row in result]

    @guarded
    async def tenant_sources(self) -> dict[str, KeySource]:
        async with self._db.read() as conn:
            result = await conn.execute(sa.select(tenants.c.id, tenants.c.source))
            return {row.id: KeySource(row.source) for row in result}

    @guarded
    async def remove_tenant(self, tenant_id: str) -> None:
        async with self._db.write() as conn:
            for table in (access_keys, instances):
                used = await conn.scalar(
                    sa.select(table.c.id).where(table.c.tenant_id == tenant_id).limit(1)
                )
                if used is not None:
                    raise Conflict(f"tenant {tenant_id!r} still has access keys or instances")
            await conn.execute(sa.delete(tenants).where(tenants.c.id == tenant_id))

    @guarded
    async def get_access_key(self, key_id: str) -> AccessKey | None:
        async with self._db.read() as conn:
            result = await conn.execute(_GET_ACCESS_KEY, {"id": key_id})
            row = result.first()
            if row is None:
                return None
            policies = await self._policies.resolved(conn, row)
        return rows.access_key_from_row(row, self._db.unseal, policies)

    @guarded
    async def put_access_key(self, key: AccessKey) -> None:
        sealed = self._db.seal(key.secret.reveal(), rows.key_secret_context(key.id))
        async with self._db.write() as conn:
            await self._db.require_tenant(conn, key.tenant_id)
            stmt = upsert_insert(conn, access_keys).values(
                id=key.id,
                tenant_id=key.tenant_id,
                secret_sealed=sealed,
                enabled=key.enabled,
                source=key.source.value,
                created_at=key.created_at or self._db.now(),
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[access_keys.c.id],
                set_={
                    name: stmt.excluded[name]
                    for name in ("tenant_id", "secret_sealed", "enabled", "source")
                },
            )
            await conn.execute(stmt)

    @guarded
    async def list_access_keys(self, tenant_id: str | None = None) -> list[AccessKey]:
        query = sa.select(access_keys).order_by(access_keys.c.id)
        if tenant_id is not None:
            query = query.where(access_keys.c.tenant_id == tenant_id)
        async with self._db.read() as conn:
            result = (await conn.execute(query)).all()
            resolved = await self._policies.resolved_all(conn, result)
        return [rows.access_key_from_row(row, self._db.unseal, resolved[row.id]) for row in result]

    @guarded
    async def set_access_key_enabled(self, key_id: str, enabled: bool) -> bool:
        async with self._db.write() as conn:
            result = await conn.execute(
                sa.update(access_keys).where(access_keys.c.id == key_id).values(enabled=enabled)
            )
            return result.rowcount > 0

    @guarded
    async def set_access_key_secret(self, key_id: str, secret: Secret) -> bool:
        """Replace only the signing secret (``keyturn keys rotate``); False: no such key."""
        sealed = self._db.seal(secret.reveal(), rows.key_secret_context(key_id))
        async with self._db.write() as conn:
            result = await conn.execute(
                sa.update(access_keys)
                .where(access_keys.c.id == key_id)
                .values(secret_sealed=sealed)
            )
            return result.rowcount > 0

    @guarded
    async def remove_access_key(self, key_id: str) -> None:
        async with self._db.write() as conn:
            await conn.execute(sa.delete(access_keys).where(access_keys.c.id == key_id))
