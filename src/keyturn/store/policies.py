"""Named policies and access-key attachments: the ``PolicyRepo`` part of ``SqlStore``.

A tenant's named policies live in ``policies`` (document as JSON text, in its author's vendor
shape). A key's ``access_keys.policies`` column is a JSON list of entries, each either an inline
document (``{"document": {...}}``) or a reference to a named policy of the key's tenant
(``{"policy": "name"}``); NULL means the key attaches nothing and is its tenant's
administrator. Reads of a key resolve its references here, so a named policy changed with the
CLI applies to every key that attaches it at its next look-up. A reference whose policy has
vanished resolves to a deny of everything (fail closed); removal refuses while a key attaches
the policy, so that only happens through direct edits. Imports: ``keyturn.core``, SQLAlchemy,
this package and the standard library.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from keyturn.core.access import KeyPolicies, NamedPolicy, labelled, missing_policy
from keyturn.core.errors import Conflict, InternalError, InvalidParameterValue, NotFound
from keyturn.core.model import KeySource
from keyturn.store.base import Connection, SqlDatabase, guarded, upsert_insert
from keyturn.store.schema import access_keys, policies

#: Inline entries and references in the ``access_keys.policies`` column.
_INLINE, _NAMED = "document", "policy"


def attachments_to_json(attached: KeyPolicies | None) -> str | None:
    """The column value for ``attached`` (None stays NULL: administrator)."""
    if attached is None:
        return None
    entries: list[dict[str, Any]] = []
    if attached.inline is not None:
        try:
            entries.append({_INLINE: json.loads(attached.inline)})
        except ValueError:
            raise InvalidParameterValue("the inline policy is not JSON") from None
    entries.extend({_NAMED: name} for name in attached.names)
    return json.dumps(entries, separators=(",", ":"), ensure_ascii=False)


def attachments_from_json(text: str | None) -> KeyPolicies | None:
    if text is None:
        return None
    try:
        entries = json.loads(text)
        inline: str | None = None
        names: list[str] = []
        for entry in entries:
            if _INLINE in entry:
                inline = json.dumps(entry[_INLINE], separators=(",", ":"), ensure_ascii=False)
            else:
                names.append(str(entry[_NAMED]))
    except (ValueError, TypeError, KeyError):
        raise InternalError("an access key has unreadable policies") from None
    return KeyPolicies(inline=inline, names=tuple(names))


def resolve(attached: KeyPolicies | None, documents: Mapping[str, str]) -> tuple[str, ...] | None:
    """``AccessKey.policies`` from what a key attaches and its tenant's documents by name."""
    if attached is None:
        return None
    found = [] if attached.inline is None else [attached.inline]
    for name in attached.names:
        document = documents.get(name)
        found.append(missing_policy(name) if document is None else labelled(document, name))
    return tuple(found)


def _named_policy(row: Any) -> NamedPolicy:
    return NamedPolicy(
        tenant_id=row.tenant_id,
        name=row.name,
        document=row.document,
        source=KeySource(row.source),
        created_at=row.created_at,
    )


class SqlPolicies:
    """The ``PolicyRepo`` port in ``db``, and the resolution ``get_access_key`` uses."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    @guarded
    async def put_policy(self, policy: NamedPolicy) -> None:
        async with self._db.write() as conn:
            await self._db.require_tenant(conn, policy.tenant_id)
            stmt = upsert_insert(conn, policies).values(
                tenant_id=policy.tenant_id,
                name=policy.name,
                document=policy.document,
                source=policy.source.value,
                created_at=policy.created_at or self._db.now(),
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[policies.c.tenant_id, policies.c.name],
                set_={"document": stmt.excluded.document, "source": stmt.excluded.source},
            )
            await conn.execute(stmt)

    @guarded
    async def get_policy(self, tenant_id: str, name: str) -> NamedPolicy:
        query = sa.select(policies).where(
            policies.c.tenant_id == tenant_id, policies.c.name == name
        )
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"tenant {tenant_id!r} has no policy named {name!r}")
        return _named_policy(row)

    @guarded
    async def list_policies(
        self, tenant_id: str | None = None, *, source: KeySource | None = None
    ) -> list[NamedPolicy]:
        query = sa.select(policies).order_by(policies.c.tenant_id, policies.c.name)
        if tenant_id is not None:
            query = query.where(policies.c.tenant_id == tenant_id)
        if source is not None:
            query = query.where(policies.c.source == source.value)
        async with self._db.read() as conn:
            result = (await conn.execute(query)).all()
        return [_named_policy(row) for row in result]

    @guarded
    async def remove_policy(self, tenant_id: str, name: str) -> bool:
        async with self._db.write() as conn:
            # PostgreSQL: lock the policy before looking for keys attaching it, so a concurrent
            # ``set_key_policies`` (which holds it FOR SHARE) either finishes first and is seen
            # here, or finds it gone (SQLite's BEGIN IMMEDIATE serializes both already).
            await conn.execute(
                sa.select(policies.c.name)
                .where(policies.c.tenant_id == tenant_id, policies.c.name == name)
                .with_for_update()
            )
            users = await self._attaching(conn, tenant_id, name)
            if users:
                raise Conflict(
                    f"policy {name!r} of tenant {tenant_id!r} is attached to access key(s) "
                    f"{', '.join(users)}; detach it first"
                )
            result = await conn.execute(
                sa.delete(policies).where(
                    policies.c.tenant_id == tenant_id, policies.c.name == name
                )
            )
            return result.rowcount > 0

    @guarded
    async def key_policies(self, key_id: str) -> KeyPolicies | None:
        query = sa.select(access_keys.c.policies).where(access_keys.c.id == key_id)
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"access key {key_id!r} does not exist")
        return attachments_from_json(row.policies)

    @guarded
    async def set_key_policies(self, key_id: str, attached: KeyPolicies | None) -> None:
        async with self._db.write() as conn:
            tenant_id = await conn.scalar(
                sa.select(access_keys.c.tenant_id).where(access_keys.c.id == key_id)
            )
            if tenant_id is None:
                raise NotFound(f"access key {key_id!r} does not exist")
            if attached is not None and attached.names:
                known = await self._documents(conn, tenant_id, attached.names, lock=True)
                for name in attached.names:
                    if name not in known:
                        raise NotFound(f"tenant {tenant_id!r} has no policy named {name!r}")
            await conn.execute(
                sa.update(access_keys)
                .where(access_keys.c.id == key_id)
                .values(policies=attachments_to_json(attached))
            )

    # ----------------------------------------------------------------------- resolution

    async def resolved(self, conn: Connection, row: Any) -> tuple[str, ...] | None:
        """``AccessKey.policies`` for an ``access_keys`` row, read on ``conn``."""
        attached = attachments_from_json(row.policies)
        if attached is None or not attached.names:
            return resolve(attached, {})
        return resolve(attached, await self._documents(conn, row.tenant_id, attached.names))

    async def resolved_all(
        self, conn: Connection, key_rows: Iterable[Any]
    ) -> dict[str, tuple[str, ...] | None]:
        """``resolved`` for many rows with one read of their tenants' policies."""
        listed = list(key_rows)
        tenants = {row.tenant_id for row in listed if row.policies is not None}
        documents: dict[tuple[str, str], str] = {}
        if tenants:
            query = sa.select(policies.c.tenant_id, policies.c.name, policies.c.document).where(
                policies.c.tenant_id.in_(sorted(tenants))
            )
            for found in await conn.execute(query):
                documents[(found.tenant_id, found.name)] = found.document
        out: dict[str, tuple[str, ...] | None] = {}
        for row in listed:
            attached = attachments_from_json(row.policies)
            mine = {
                name: documents[(row.tenant_id, name)]
                for name in (attached.names if attached else ())
                if (row.tenant_id, name) in documents
            }
            out[row.id] = resolve(attached, mine)
        return out

    async def _documents(
        self, conn: Connection, tenant_id: str, names: Iterable[str], *, lock: bool = False
    ) -> dict[str, str]:
        """The named documents; ``lock``: held FOR SHARE to the end of the transaction (a
        ``remove_policy`` then waits, and sees the attachment)."""
        query = sa.select(policies.c.name, policies.c.document).where(
            policies.c.tenant_id == tenant_id, policies.c.name.in_(sorted(set(names)))
        )
        if lock:
            query = query.with_for_update(read=True)
        return {row.name: row.document for row in await conn.execute(query)}

    async def _attaching(self, conn: Connection, tenant_id: str, name: str) -> list[str]:
        """The ids of the tenant's keys that attach the named policy."""
        query = (
            sa.select(access_keys.c.id, access_keys.c.policies)
            .where(access_keys.c.tenant_id == tenant_id, access_keys.c.policies.is_not(None))
            .order_by(access_keys.c.id)
        )
        users = []
        for row in await conn.execute(query):
            attached = attachments_from_json(row.policies)
            if attached is not None and name in attached.names:
                users.append(row.id)
        return users
