"""Master-key rotation: every sealed secret re-sealed under a new master key, crash-safe.

``SEALED_COLUMNS`` lists every column holding a ``SecretBox`` token with the context it was
sealed under (access-key secrets, node admin passwords and pending ones, task passwords and
snapshots, tenant RSA private keys). ``SqlRekey.reseal`` rewrites, in ONE transaction, each
token not already under the new key, and re-keys the audit chain (its MAC key is derived from
the master key) under the new key; a token that does not open aborts it, so the store is all
old or all new. The chain is re-keyed up to its first bad record, if it has one: the records
before it stay verifiable, and the bad one keeps being reported (the old key that would verify
the rest is gone). ``rotate_master_key`` is the whole procedure, in an order where a crash at
any point leaves a data dir that opens (``keyturn.store.sealing.open_secret_box`` also opens
with ``master.key.new`` and ``master.key.old``) and a second run finishes the job:

1. write the new key to ``master.key.new`` (or, for ``KEYTURN_MASTER_KEY`` users, to the file
   they name), durably, before anything is sealed under it; an existing one is resumed;
2. re-seal everything under it in one transaction;
3. keep the old key as ``master.key.old``, move ``master.key.new`` over ``master.key``;
4. re-seal whatever a concurrent writer sealed under the old key meanwhile, check that every
   token now names the new key, and only then delete ``master.key.old``.

Servers hold ``keyturn.lock`` in the data dir shared (``DataDirLock``) and the rotation takes it
exclusively, so it refuses to run under a live server, whose in-memory key would stop opening
the store. Imports: SQLAlchemy, ``keyturn.core``, this package and the standard library.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa

from keyturn.core.errors import DomainError, InternalError
from keyturn.core.ports import Clock
from keyturn.store import rows
from keyturn.store.audit import ChainRekey, rekey_chain, store_chain_keys
from keyturn.store.audit_chain import ChainKeys
from keyturn.store.audit_keying import chain_was_keyed, mark_chain_keyed
from keyturn.store.base import SqlDatabase, guarded
from keyturn.store.opening import open_store
from keyturn.store.rsa_keys import _context as rsa_private_context
from keyturn.store.schema import (
    access_keys,
    fleet_targets,
    nodes,
    secret_versions,
    tasks,
    tenant_rsa_keys,
)
from keyturn.store.sealing import (
    KEY_FILE,
    NEW_KEY_FILE,
    OLD_KEY_FILE,
    AesGcmSecretBox,
    decode_master_key,
    fsync_dir,
    key_id,
    new_master_key,
    read_key_file,
    write_key_file,
)
from keyturn.store.secret_rows import version_context

LOCK_FILE: Final = "keyturn.lock"
#: Rows re-sealed per UPDATE round trip (executemany).
_BATCH: Final = 500


class RotationError(DomainError):
    """The rotation cannot run or did not finish; the message says what to do."""


@dataclass(frozen=True, slots=True)
class SealedColumn:
    table: sa.Table
    column: str
    #: The row's primary key columns, which name it in the context.
    keys: tuple[str, ...]
    context: Callable[[Any], str]

    @property
    def name(self) -> str:
        return f"{self.table.name}.{self.column}"


SEALED_COLUMNS: Final = (
    SealedColumn(access_keys, "secret_sealed", ("id",), lambda r: rows.key_secret_context(r.id)),
    SealedColumn(
        nodes,
        "password_sealed",
        ("instance_id", "ordinal"),
        lambda r: rows.node_password_context(r.instance_id, int(r.ordinal)),
    ),
    SealedColumn(
        nodes,
        "pending_password_sealed",
        ("instance_id", "ordinal"),
        lambda r: rows.node_pending_context(r.instance_id, int(r.ordinal)),
    ),
    SealedColumn(tasks, "pending_sealed", ("id",), lambda r: rows.task_pending_context(int(r.id))),
    SealedColumn(
        tasks, "snapshots_sealed", ("id",), lambda r: rows.task_snapshots_context(int(r.id))
    ),
    SealedColumn(
        fleet_targets,
        "password_sealed",
        ("job_id", "seq"),
        lambda r: rows.fleet_password_context(r.job_id, int(r.seq)),
    ),
    SealedColumn(
        tenant_rsa_keys,
        "private_key_sealed",
        ("tenant_id",),
        lambda r: rsa_private_context(r.tenant_id),
    ),
    SealedColumn(
        secret_versions,
        "password_sealed",
        ("tenant_id", "name", "version_id"),
        lambda r: version_context(r.tenant_id, r.name, r.version_id),
    ),
)


def token_key_id(token: str) -> str:
    """The key id a ``v1:<key id>:...`` token names (empty for anything else)."""
    version, _, rest = token.partition(":")
    return rest.partition(":")[0] if version == "v1" else ""


@dataclass(frozen=True, slots=True)
class Resealed:
    """What one ``reseal`` did: tokens re-sealed per column, and the audit chain's re-keying."""

    counts: dict[str, int]
    audit: ChainRekey


class SqlRekey:
    """Re-sealing over the tables of ``db``, whose box must open every token."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    @guarded
    async def reseal(self, target: AesGcmSecretBox, *, audit_legacy: bool = True) -> Resealed:
        """Re-seal, in one transaction, every token not sealed by ``target`` and re-key the
        audit chain under ``target`` (``audit_legacy``: unkeyed records may still open it).
        Nothing is changed if any token does not open."""
        counts: dict[str, int] = {}
        chain_keys = store_chain_keys(self._db, legacy=audit_legacy)
        async with self._db.write() as conn:
            for spec in SEALED_COLUMNS:
                counts[spec.name] = await self._reseal_column(conn, spec, target)
            audit = await rekey_chain(conn, chain_keys, ChainKeys.of(target).signing, partial=True)
        return Resealed(counts=counts, audit=audit)

    async def _reseal_column(self, conn: Any, spec: SealedColumn, target: AesGcmSecretBox) -> int:
        column = spec.table.c[spec.column]
        keys = [spec.table.c[name] for name in spec.keys]
        # FOR UPDATE: on PostgreSQL no other writer changes a row between read and rewrite
        # (SQLite's BEGIN IMMEDIATE already excludes every other writer).
        query = sa.select(*keys, column).where(column.is_not(None)).with_for_update()
        found = (await conn.execute(query)).all()
        changes: list[dict[str, Any]] = []
        for row in found:
            token = row._mapping[column]
            if token_key_id(token) == target.key_id:
                continue
            context = spec.context(row)
            try:
                plain = self._db.unseal(token, context)
            except InternalError:
                ident = ", ".join(f"{k}={row._mapping[k]!s}" for k in keys)
                raise RotationError(
                    f"the sealed value in {spec.name} ({ident}) does not open with the master"
                    " key; nothing was changed"
                ) from None
            params = {f"k_{name}": row._mapping[spec.table.c[name]] for name in spec.keys}
            changes.append({**params, "old": token, "new": target.seal(plain, context=context)})
        if not changes:
            return 0
        update = (
            sa.update(spec.table)
            .where(*[k == sa.bindparam(f"k_{k.name}") for k in keys], column == sa.bindparam("old"))
            .values({spec.column: sa.bindparam("new")})
        )
        for start in range(0, len(changes), _BATCH):
            batch = changes[start : start + _BATCH]
            result = await conn.execute(update, batch)
            if conn.dialect.supports_sane_multi_rowcount and result.rowcount != len(batch):
                raise InternalError(f"{spec.name} changed during the rotation; nothing was changed")
        return len(changes)

    @guarded
    async def census(self) -> dict[str, int]:
        """How many tokens each key id sealed, over every sealed column."""
        counts: dict[str, int] = {}
        async with self._db.read() as conn:
            for spec in SEALED_COLUMNS:
                column = spec.table.c[spec.column]
                for (token,) in await conn.execute(sa.select(column).where(column.is_not(None))):
                    kid = token_key_id(token)
                    counts[kid] = counts.get(kid, 0) + 1
        return counts


class DataDirLock:
    """An advisory lock on ``<data_dir>/keyturn.lock``: shared by servers, exclusive for a
    rotation. Held until ``release`` or the process ends (a crash releases it)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, *, exclusive: bool) -> bool:
        """Take the lock without waiting; False if it is held in a conflicting mode."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


@dataclass(frozen=True, slots=True)
class Rotation:
    """What a rotation did. ``key_file`` holds the new key: ``master.key`` in the data dir, or
    the file named for a ``KEYTURN_MASTER_KEY`` user, who must move it into the environment.
    ``audit`` is the audit chain's re-keying (the first pass: the chain as found)."""

    old_key_id: str
    new_key_id: str
    resealed: Mapping[str, int]
    key_file: Path
    from_env: bool
    audit: ChainRekey


async def rotate_master_key(
    *,
    data_dir: Path,
    database_url: str,
    env_key: str | None,
    new_key_file: Path | None,
    clock: Clock,
) -> Rotation:
    """Re-seal every secret under a new master key (see the module docstring)."""
    lock = DataDirLock(data_dir)
    if not lock.acquire(exclusive=True):
        raise RotationError(
            f"a keyturn server (or another rotation) is using {data_dir}: stop it first"
        )
    try:
        if env_key is not None and env_key.strip():
            if new_key_file is None:
                raise RotationError(
                    "KEYTURN_MASTER_KEY is set: name a file for the new key with --new-key-file"
                )
            current = decode_master_key(env_key, origin="KEYTURN_MASTER_KEY")
            if new_key_file.resolve().parent == data_dir.resolve():
                raise RotationError(
                    "--new-key-file must be outside the data dir (a key kept in the environment"
                    " should not also lie beside the data)"
                )
            return await _rotate(current, [], new_key_file, data_dir, database_url, clock)
        if new_key_file is not None:
            raise RotationError("--new-key-file is only for KEYTURN_MASTER_KEY users")
        current_or_none = read_key_file(data_dir / KEY_FILE)
        if current_or_none is None:
            raise RotationError(f"there is no readable master key in {data_dir}")
        old = read_key_file(data_dir / OLD_KEY_FILE)
        retired = [old] if old is not None else []
        target = data_dir / NEW_KEY_FILE
        return await _rotate(current_or_none, retired, target, data_dir, database_url, clock)
    finally:
        lock.release()


async def _rotate(
    current: bytes,
    retired: list[bytes],
    target_file: Path,
    data_dir: Path,
    database_url: str,
    clock: Clock,
) -> Rotation:
    from_env = target_file != data_dir / NEW_KEY_FILE  # env users' files are elsewhere
    target = read_key_file(target_file)  # an interrupted rotation's key is resumed
    if target is None or target == current:
        target = new_master_key()
        write_key_file(target_file, target)  # durable before anything is sealed under it
    opener = AesGcmSecretBox(current, retired=[target, *retired])
    sealer = AesGcmSecretBox(target)
    store = await open_store(database_url, opener, clock)
    try:
        rekey = SqlRekey(store.db)
        legacy = not chain_was_keyed(data_dir)
        first = await rekey.reseal(sealer, audit_legacy=legacy)
        mark_chain_keyed(data_dir)  # every good record is keyed now
        resealed = first.counts
        key_file = target_file
        if not from_env:
            key_file = data_dir / KEY_FILE
            # The old key stays on disk until every secret is known to be under the new one.
            write_key_file(data_dir / OLD_KEY_FILE, current)
            os.replace(target_file, key_file)
            fsync_dir(data_dir)
        # A writer that did not take the lock (another CLI command) may have sealed under
        # the old key meanwhile: re-seal that too, then require every token to be new.
        for name, count in (await rekey.reseal(sealer, audit_legacy=False)).counts.items():
            resealed[name] += count
        census = await rekey.census()
        stale = sum(n for kid, n in census.items() if kid != sealer.key_id)
        if stale:
            raise RotationError(
                f"{stale} sealed value(s) are not under the new key yet; run the rotation again"
            )
        if not from_env:
            (data_dir / OLD_KEY_FILE).unlink(missing_ok=True)
            fsync_dir(data_dir)
    finally:
        await store.close()
    return Rotation(
        old_key_id=key_id(current),
        new_key_id=sealer.key_id,
        resealed=resealed,
        key_file=key_file,
        from_env=from_env,
        audit=first.audit,
    )
