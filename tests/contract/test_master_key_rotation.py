"""Master-key rotation on a real SQLite store (``keyturn.store.rekey``).

A data dir is filled with one value of every sealed kind (access-key secret, node admin
password, pending admin password, task password, credential snapshots, tenant RSA private key,
a fleet target's new password)
and a few audit records. After ``rotate_master_key`` every value opens under the new key and
reads back the same, the RSA public key is unchanged, no token opens with the old key, the key
files are in their final place and no plaintext is in the data dir; the audit chain, keyed by
a key derived from the master key, is re-keyed in the same transaction and verifies under the
new key only (a chain broken before the rotation keeps its break where it was; an unkeyed one
from before the upgrade is keyed). Interrupted rotations (each crash point of the documented
order) leave a data dir that opens and that a second run finishes; the
``KEYTURN_MASTER_KEY`` variant writes the new key to the operator's file; a live server's lock,
or a value that does not open, stops the rotation before it changes anything.
"""

from __future__ import annotations

import base64
import hashlib
import stat
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from keyturn.core.audit import AuditEvent
from keyturn.core.cluster import Fence
from keyturn.core.engine_ports import CredentialSnapshot
from keyturn.core.errors import InternalError
from keyturn.core.fleet import FleetOptions, NewTarget, Selector
from keyturn.core.model import Product, Tenant
from keyturn.core.secret_manager import (
    FlowTrigger,
    SecretSpec,
    SecretVendor,
    SecretVersion,
)
from keyturn.core.secrets import Secret
from keyturn.core.tasks import NewTask, TaskKind
from keyturn.service.admin import Admin
from keyturn.service.context import SystemClock
from keyturn.store.audit import SqlAuditLog
from keyturn.store.audit_chain import ChainKeys
from keyturn.store.audit_keying import KEYED_MARKER, open_audit_log
from keyturn.store.fleet import SqlFleetRepo
from keyturn.store.migrate import sync_url
from keyturn.store.opening import open_store, sqlite_url
from keyturn.store.rekey import (
    SEALED_COLUMNS,
    DataDirLock,
    Rotation,
    RotationError,
    SqlRekey,
    rotate_master_key,
    token_key_id,
)
from keyturn.store.sealing import (
    KEY_FILE,
    NEW_KEY_FILE,
    OLD_KEY_FILE,
    AesGcmSecretBox,
    key_id,
    open_secret_box,
    read_key_file,
    write_key_file,
)
from keyturn.store.secrets import SqlSecrets
from keyturn.store.sql import SqlStore
from tests.support.audit_events import audit_event
from tests.support.fakes import fake_flow
from tests.support.store_backends import StoreBackend

TENANT = "1300000009"
INSTANCE = "crs-rekey001"


#: A managed secret's version password (``secret_versions``).
SECRET_PASSWORD = "Secret-Versi0n-pw-" + "q" * 8


async def fill_secret(store: SqlStore) -> None:
    repo = SqlSecrets(store.db)
    now = datetime.now(UTC)
    spec = SecretSpec(
        tenant_id=TENANT,
        name="rekey-secret",
        vendor=SecretVendor.TENCENT_SSM,
        instance_id=INSTANCE,
        account="app",
    )
    await repo.insert_secret(spec, created_at=now, next_rotation_at=None)
    flow = fake_flow(
        "flow-rekey",
        tenant_id=TENANT,
        name=spec.name,
        trigger=FlowTrigger.CREATE,
        created_at=now,
        version_id="v-rekey",
    )
    version = SecretVersion(
        version_id="v-rekey",
        stages=(),
        created_at=now,
        password=Secret(SECRET_PASSWORD),
        account="app",
    )
    await repo.start_flow(flow, version, lock_key="rekey")
    await repo.finish_flow(flow.flow_id, succeeded=True, at=now)


async def check_secret(store: SqlStore) -> None:
    versions = await SqlSecrets(store.db).versions(TENANT, "rekey-secret")
    assert [v.password.reveal() for v in versions] == [SECRET_PASSWORD]


@dataclass
class Filled:
    """The plaintexts put into a data dir, to compare with what comes back."""

    key_id: str
    key_secret: str
    node_password: str
    node_pending: str
    task_id: int
    task_password: str
    snapshot: dict[str, str]
    public_key: str
    audit_records: int
    fleet_job: str
    fleet_password: str
    secret_password: str = SECRET_PASSWORD

    def plaintexts(self) -> list[str]:
        return [
            self.key_secret,
            self.node_password,
            self.node_pending,
            self.task_password,
            self.secret_password,
            self.fleet_password,
        ]


AUDIT_RECORDS = 5


def numbered_event(n: int) -> AuditEvent:
    return audit_event(
        at=datetime(2025, 1, 2, tzinfo=UTC) + timedelta(seconds=n),
        tenant_id=TENANT,
        key_id="AKIDrekey",
        source_ip="127.0.0.1",
        user_agent="test",
        resource=INSTANCE,
        request_id=f"req-{n}",
    )


@asynccontextmanager
async def opened(data_dir: Path, env: str | None = None) -> AsyncIterator[SqlStore]:
    """The data dir's store, under the key file (or ``env``: ``KEYTURN_MASTER_KEY``), closed
    after the block."""
    data_dir.mkdir(parents=True, exist_ok=True)
    store = await open_store(url_of(data_dir), open_secret_box(data_dir, env), SystemClock())
    try:
        yield store
    finally:
        await store.close()


async def fill(data_dir: Path, env: str | None = None) -> Filled:
    async with opened(data_dir, env) as store:
        admin = Admin(store)
        await admin.ensure_tenant(Tenant(id=TENANT, name="rekey"))
        key = await admin.create_key(TENANT)
        node_password, pending = "Node-Adm1n-pw-" + "x" * 8, "Pend-Adm1n-pw-" + "y" * 8
        await admin.add_instance(
            tenant_id=TENANT,
            instance_id=INSTANCE,
            product=Product.TENCENT_REDIS,
            region="ap-guangzhou",
            node_urls=[Secret(f"redis://default:{node_password}@127.0.0.1:6399")],
        )
        task_password = "Task-Passw0rd-" + "z" * 8
        task = await store.create_task(
            NewTask(
                tenant_id=TENANT,
                instance_id=INSTANCE,
                account="default",
                kind=TaskKind.RESET_PASSWORD,
                request_id="req-rekey",
                steps=(),
            ),
            Secret(task_password),
        )
        snapshot = {"hash": "a" * 64, "flags": "on"}
        await store.write_ahead(
            task.id,
            snapshots={"127.0.0.1:6379": CredentialSnapshot(account="default", data=snapshot)},
            admin_pending={0: Secret(pending)},
            steps=(),
        )
        public = (await store.public_key(TENANT)).der_base64
        await fill_secret(store)
        fleet_password = "Fleet-Passw0rd-" + "w" * 8
        fleet = SqlFleetRepo(store.db)
        job = await fleet.create_job(
            "fj-0123456789ab",
            Selector(tenant_id=TENANT),
            FleetOptions(),
            [NewTarget(instance_id=INSTANCE, product=Product.TENCENT_REDIS, account="default")],
        )
        claimed = await fleet.claim_job("node-rekey", 60, [])
        assert claimed is not None
        [target] = await fleet.next_pending(job.id, 0, 1)
        await fleet.mark_in_flight(
            Fence("node-rekey", claimed.fence), target, Secret(fleet_password)
        )
        audit = open_audit_log(store, data_dir)
        for n in range(AUDIT_RECORDS):
            await audit.append(numbered_event(n))
    return Filled(
        key_id=key.id,
        key_secret=key.secret.reveal(),
        node_password=node_password,
        node_pending=pending,
        task_id=task.id,
        task_password=task_password,
        snapshot=snapshot,
        public_key=public,
        audit_records=AUDIT_RECORDS,
        fleet_job=job.id,
        fleet_password=fleet_password,
    )


async def check_opens(data_dir: Path, filled: Filled, env: str | None = None) -> None:
    """Every sealed value reads back as it was put in, through the store's own code."""
    async with opened(data_dir, env) as store:
        key = await store.get_access_key(filled.key_id)
        assert key is not None and key.secret.reveal() == filled.key_secret
        node = (await store.get_instance(TENANT, INSTANCE)).nodes[0]
        assert node.address.password is not None
        assert node.address.password.reveal() == filled.node_password
        assert node.pending_password is not None
        assert node.pending_password.reveal() == filled.node_pending
        pending = await store.pending_password(filled.task_id)
        assert pending is not None and pending.reveal() == filled.task_password
        stored = await store.snapshots(filled.task_id)
        assert dict(stored["127.0.0.1:6379"].data) == filled.snapshot
        assert (await store.public_key(TENANT)).der_base64 == filled.public_key
        await check_secret(store)
        [target] = await SqlFleetRepo(store.db).targets(filled.fleet_job, after_seq=-1, limit=1)
        fleet_password = await SqlFleetRepo(store.db).target_password(target)
        assert fleet_password is not None and fleet_password.reveal() == filled.fleet_password
        public = serialization.load_der_public_key(base64.b64decode(filled.public_key))
        assert isinstance(public, rsa.RSAPublicKey)
        ciphertext = public.encrypt(b"Encrypted-Pw-1", padding.PKCS1v15())
        secret = await store.decrypt(TENANT, base64.b64encode(ciphertext).decode())
        assert secret.reveal() == "Encrypted-Pw-1"
        check = await open_audit_log(store, data_dir).verify()
        assert check.intact and check.records == filled.audit_records, check


async def tokens(data_dir: Path) -> list[tuple[str, str]]:
    """(column, token) of every sealed value, read raw."""
    engine = sa.create_engine(sync_url(url_of(data_dir)))
    found: list[tuple[str, str]] = []
    try:
        with engine.connect() as conn:
            for spec in SEALED_COLUMNS:
                column = spec.table.c[spec.column]
                for (token,) in conn.execute(sa.select(column).where(column.is_not(None))):
                    found.append((spec.name, token))
    finally:
        engine.dispose()
    return found


def data_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file())


async def rotated(
    data_dir: Path, env: str | None = None, new_key_file: Path | None = None
) -> Rotation:
    """``keyturn master-key rotate`` of the data dir (its store at ``url_of``)."""
    return await rotate_master_key(
        data_dir=data_dir,
        database_url=url_of(data_dir),
        env_key=env,
        new_key_file=new_key_file,
        clock=SystemClock(),
    )


async def rotate(data_dir: Path, env: str | None = None, new_key_file: Path | None = None) -> str:
    return (await rotated(data_dir, env, new_key_file)).new_key_id


#: The store URL of each data dir a test made: SQLite inside it, or the test's PostgreSQL
#: database (``store_backend``).
_URLS: dict[Path, str] = {}


def url_of(data_dir: Path) -> str:
    return _URLS[data_dir]


@pytest.fixture
def data_dir(tmp_path: Path, store_backend: StoreBackend) -> Iterator[Path]:
    path = tmp_path / "data"
    _URLS[path] = sqlite_url(path) if store_backend.sqlite else store_backend.url
    yield path
    del _URLS[path]


async def test_rotation_reseals_everything(data_dir: Path) -> None:
    filled = await fill(data_dir)
    old = read_key_file(data_dir / KEY_FILE)
    assert old is not None
    before = await tokens(data_dir)
    assert {name for name, _ in before} == {spec.name for spec in SEALED_COLUMNS}

    rotation = await rotated(data_dir)
    assert rotation.old_key_id == key_id(old) != rotation.new_key_id
    assert sum(rotation.resealed.values()) == len(before)
    assert rotation.audit.check.intact and rotation.audit.rekeyed == AUDIT_RECORDS
    assert not rotation.from_env and rotation.key_file == data_dir / KEY_FILE

    new = read_key_file(data_dir / KEY_FILE)
    assert new is not None and key_id(new) == rotation.new_key_id
    assert stat.S_IMODE((data_dir / KEY_FILE).stat().st_mode) == 0o600
    assert not (data_dir / NEW_KEY_FILE).exists() and not (data_dir / OLD_KEY_FILE).exists()
    await check_opens(data_dir, filled)

    after = await tokens(data_dir)
    assert len(after) == len(before)
    old_box = AesGcmSecretBox(old)
    for name, token in after:
        assert token_key_id(token) == rotation.new_key_id, name
        spec = next(s for s in SEALED_COLUMNS if s.name == name)
        with pytest.raises(InternalError):
            # Whatever the context: the old key does not even know the token's key id.
            old_box.unseal(token, context=spec.name)
    # The chain verifies under the new key (check_opens) and no longer under the old one.
    async with opened(data_dir) as store:
        old_keys = ChainKeys.of(old_box, legacy=False)
        check = await SqlAuditLog(store, old_keys).verify()
        assert check.bad_seq == 1 and "MAC" in check.problem
        assert (
            rotation.audit.head_hash == (await open_audit_log(store, data_dir).verify()).head_hash
        )
    everything = data_bytes(data_dir)
    for plain in [*filled.plaintexts(), "PRIVATE KEY"]:
        assert plain.encode() not in everything
    assert base64.b64encode(old) not in everything


async def test_old_key_cannot_open_the_store(data_dir: Path) -> None:
    await fill(data_dir)
    old = (data_dir / KEY_FILE).read_text()
    await rotate(data_dir)
    # The old key, as if it were still configured.
    async with opened(data_dir, env=old) as store:
        with pytest.raises(InternalError):
            await store.list_access_keys()


async def test_crash_after_the_transaction_before_the_swap(data_dir: Path) -> None:
    """The new key is in master.key.new and the store is sealed under it, but master.key is
    still the old one: the data dir opens, and a second run finishes with that same key."""
    filled = await fill(data_dir)
    old = read_key_file(data_dir / KEY_FILE)
    assert old is not None
    new = AesGcmSecretBox(bytes(range(32)))
    write_key_file(data_dir / NEW_KEY_FILE, bytes(range(32)))
    opener = AesGcmSecretBox(old, retired=[bytes(range(32))])
    store = await open_store(url_of(data_dir), opener, SystemClock())
    try:
        await SqlRekey(store.db).reseal(new)
    finally:
        await store.close()
    await check_opens(data_dir, filled)  # master.key.new opens what it sealed

    assert await rotate(data_dir) == new.key_id  # resumed, not a third key
    assert read_key_file(data_dir / KEY_FILE) == bytes(range(32))
    assert {token_key_id(t) for _, t in await tokens(data_dir)} == {new.key_id}
    await check_opens(data_dir, filled)


async def test_crash_before_the_transaction(data_dir: Path) -> None:
    filled = await fill(data_dir)
    write_key_file(data_dir / NEW_KEY_FILE, bytes(range(32)))
    await check_opens(data_dir, filled)
    assert await rotate(data_dir) == key_id(bytes(range(32)))
    await check_opens(data_dir, filled)


async def test_crash_after_the_swap_with_the_old_key_kept(data_dir: Path) -> None:
    """master.key is new, master.key.old still there (and, worst case, values under it)."""
    filled = await fill(data_dir)
    old = read_key_file(data_dir / KEY_FILE)
    assert old is not None
    write_key_file(data_dir / OLD_KEY_FILE, old)
    write_key_file(data_dir / KEY_FILE, bytes(range(32)))
    await check_opens(data_dir, filled)
    final = await rotate(data_dir)
    assert final not in (key_id(old), key_id(bytes(range(32))))
    assert not (data_dir / OLD_KEY_FILE).exists()
    assert {token_key_id(t) for _, t in await tokens(data_dir)} == {final}
    await check_opens(data_dir, filled)


async def test_environment_key(data_dir: Path, tmp_path: Path) -> None:
    env = base64.b64encode(bytes(range(1, 33))).decode()
    filled = await fill(data_dir, env)
    assert not (data_dir / KEY_FILE).exists()
    with pytest.raises(RotationError, match="--new-key-file"):
        await rotate(data_dir, env)
    with pytest.raises(RotationError, match="outside the data dir"):
        await rotate(data_dir, env, data_dir / "new.key")
    target = tmp_path / "vault" / "new.key"
    target.parent.mkdir()
    rotation = await rotated(data_dir, env, target)
    assert rotation.from_env and rotation.key_file == target
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not (data_dir / KEY_FILE).exists()  # nothing written beside the data
    await check_opens(data_dir, filled, env=target.read_text())
    async with opened(data_dir, env) as store:
        with pytest.raises(InternalError):
            await store.list_access_keys()


async def test_refused_while_a_server_holds_the_data_dir(data_dir: Path) -> None:
    filled = await fill(data_dir)
    before = await tokens(data_dir)
    server = DataDirLock(data_dir)
    assert server.acquire(exclusive=False)
    try:
        assert DataDirLock(data_dir).acquire(exclusive=False)  # servers share it
        with pytest.raises(RotationError, match="stop it first"):
            await rotate(data_dir)
    finally:
        server.release()
    assert await tokens(data_dir) == before
    assert not (data_dir / NEW_KEY_FILE).exists()
    await check_opens(data_dir, filled)


async def test_a_value_that_does_not_open_changes_nothing(data_dir: Path) -> None:
    filled = await fill(data_dir)
    stranger = AesGcmSecretBox(bytes(range(2, 34)))
    engine = sa.create_engine(sync_url(url_of(data_dir)))
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE nodes SET pending_password_sealed = :t"),
                {"t": stranger.seal("x", context="elsewhere")},
            )
    finally:
        engine.dispose()
    before = await tokens(data_dir)
    with pytest.raises(RotationError) as caught:
        await rotate(data_dir)
    assert "nodes.pending_password_sealed" in str(caught.value)
    assert INSTANCE in str(caught.value)
    assert await tokens(data_dir) == before
    async with opened(data_dir) as store:
        key = await store.get_access_key(filled.key_id)
        assert key is not None and key.secret.reveal() == filled.key_secret


async def test_a_broken_chain_keeps_its_break_across_a_rotation(data_dir: Path) -> None:
    """Record 3 was edited: records 1-2 are re-keyed, 3 on are kept, verify still names 3."""
    await fill(data_dir)
    engine = sa.create_engine(sync_url(url_of(data_dir)))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE audit_log SET event = replace(event, 'req-2', 'x')"))
            kept = conn.execute(sa.text("SELECT hash FROM audit_log WHERE seq >= 3")).all()
    finally:
        engine.dispose()
    rotation = await rotated(data_dir)
    assert (rotation.audit.check.bad_seq, rotation.audit.rekeyed) == (3, 2)
    async with opened(data_dir) as store:
        check = await open_audit_log(store, data_dir).verify()
        assert (check.bad_seq, check.records) == (3, 2)
    engine = sa.create_engine(sync_url(url_of(data_dir)))
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT hash FROM audit_log WHERE seq >= 3")).all() == kept
    finally:
        engine.dispose()


async def test_a_legacy_chain_is_keyed_by_a_rotation(data_dir: Path) -> None:
    """A data dir never started since the upgrade: its unkeyed chain is verified and keyed
    under the new master key by the rotation itself."""
    filled = await fill(data_dir)
    engine = sa.create_engine(sync_url(url_of(data_dir)))
    try:
        with engine.begin() as conn:
            prev = "0" * 64
            for seq, text in conn.execute(sa.text("SELECT seq, event FROM audit_log")).all():
                digest = hashlib.sha256((prev + text).encode()).hexdigest()
                conn.execute(
                    sa.text(
                        "UPDATE audit_log SET prev_hash = :p, hash = :h, scheme = 'sha256'"
                        " WHERE seq = :s"
                    ),
                    {"p": prev, "h": digest, "s": seq},
                )
                prev = digest
    finally:
        engine.dispose()
    assert not (data_dir / KEYED_MARKER).exists()
    await rotate(data_dir)
    assert (data_dir / KEYED_MARKER).exists()
    await check_opens(data_dir, filled)  # the whole chain verifies, keyed, under the new key
