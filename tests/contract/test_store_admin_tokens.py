"""Contract tests of admin tokens in the store, on SQLite and PostgreSQL: only the SHA-256 of
a token is stored, a token is found by it, a revocation is seen by another handle on the same
database (another node) within the service's half-second cache, and a scope names an existing
tenant."""

from __future__ import annotations

import time

import pytest

from keyturn.core.admin_tokens import token_hash
from keyturn.core.errors import MissingAuthorization, NotFound
from keyturn.core.model import KeySource, Tenant
from keyturn.service.admin_tokens import AdminTokens
from keyturn.service.credentials import KEY_CACHE_SECONDS
from keyturn.store.admin_tokens import SqlAdminTokens
from keyturn.store.opening import open_store
from keyturn.store.sealing import AesGcmSecretBox
from keyturn.store.sql import SqlStore
from tests.support.fakes import FakeClock
from tests.support.store_backends import BACKEND_KEY, StoreBackend


async def test_a_token_is_stored_as_its_hash_and_found_by_it(
    backend_store: SqlStore, store_backend: StoreBackend
) -> None:
    await backend_store.put_tenant(Tenant(id="1300000001", name="t"), KeySource.CLI)
    tokens = AdminTokens(SqlAdminTokens(backend_store.db), FakeClock(tick=1))
    token, secret = await tokens.create(tenant_id="1300000001", name="ci")
    everyone, _ = await tokens.create(tenant_id=None)
    found = await tokens.authenticate(f"Bearer {secret.reveal()}")
    assert (found.id, found.tenant_id, found.name) == (token.id, "1300000001", "ci")
    assert [t.scope for t in await tokens.list()] == ["1300000001", "*"]
    assert everyone.scope == "*"
    with store_backend.raw() as raw:
        rows = raw.execute("SELECT token_hash FROM admin_tokens").fetchall()
    stored = {row[0] for row in rows}
    assert token_hash(secret.reveal()) in stored
    assert all(secret.reveal() not in value for value in stored)
    with pytest.raises(NotFound):
        await tokens.create(tenant_id="1399999999")


async def test_a_revocation_reaches_another_node_within_a_second(
    backend_store: SqlStore, store_backend: StoreBackend
) -> None:
    other = await open_store(store_backend.url, AesGcmSecretBox(BACKEND_KEY), FakeClock(tick=1))
    try:
        here = AdminTokens(SqlAdminTokens(backend_store.db), FakeClock(tick=1))
        there = AdminTokens(SqlAdminTokens(other.db), FakeClock(tick=1))
        token, secret = await here.create(tenant_id=None)
        header = f"Bearer {secret.reveal()}"
        assert (await there.authenticate(header)).id == token.id
        await here.revoke(token.id)
        with pytest.raises(NotFound):
            await here.revoke(token.id)
        time.sleep(KEY_CACHE_SECONDS + 0.05)
        with pytest.raises(MissingAuthorization):
            await there.authenticate(header)
        assert [t.active for t in await there.list()] == [False]
    finally:
        await other.close()
