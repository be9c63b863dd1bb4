"""Searching instances by text (the admin API's ``GET /instances?q=``): a case-insensitive
substring of the id or the name, within a tenant and product, a page at a time in id order.

One statement answers the page, its nodes and the total
(``keyturn.store.instance_repo.instances_query``, the listing's own). A substring cannot use an
index, so this scans the tenant's instances: about tens of milliseconds at 100,000 (tested
through the API); plain listings, which need no scan, stay on the store's cached counts and
anchors. ``%``, ``_`` and ``\\`` in the text are matched
literally. Imports: ``keyturn.core``, SQLAlchemy, this package and the standard library.
"""

from __future__ import annotations

import sqlalchemy as sa

from keyturn.core.model import Instance
from keyturn.core.store_ports import Page
from keyturn.store import rows
from keyturn.store.base import count_of, guarded
from keyturn.store.instance_repo import instances_query
from keyturn.store.schema import instances
from keyturn.store.sql import SqlStore


def _literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class SqlInstanceSearch:
    """Instance search on ``store``'s database."""

    def __init__(self, store: SqlStore) -> None:
        self._db = store.db

    @guarded
    async def search_instances(
        self, tenant_id: str | None, *, text: str, product: str | None, page: Page
    ) -> tuple[list[Instance], int]:
        pattern = f"%{_literal(text)}%"
        where: list[sa.ColumnElement[bool]] = [
            sa.or_(
                instances.c.id.ilike(pattern, escape="\\"),
                instances.c.name.ilike(pattern, escape="\\"),
            )
        ]
        if tenant_id is not None:
            where.append(instances.c.tenant_id == tenant_id)
        if product is not None:
            where.append(instances.c.product == product)
        async with self._db.read() as conn:
            result = (await conn.execute(instances_query(where, page))).all()
            if result:
                total = int(result[0].total)
            else:
                total = int(await conn.scalar(sa.select(count_of(instances, where))) or 0)
        return rows.instances_from_rows(result, self._db.unseal), total
