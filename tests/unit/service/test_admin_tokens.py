"""Unit tests of admin-token authentication: the ``Bearer`` scheme, unknown, revoked and
oversized tokens refused alike, the half-second cache, and a use recorded at most once a
minute."""

from __future__ import annotations

import pytest

from keyturn.core.admin_tokens import TOKEN_PREFIX, token_hash
from keyturn.core.errors import InvalidParameterValue, MissingAuthorization
from keyturn.service.admin_tokens import AdminTokens
from tests.support.admin_api import MemoryTokens
from tests.support.fakes import FakeClock


async def test_the_bearer_of_a_token_is_authenticated_and_cached() -> None:
    repo = MemoryTokens()
    tokens = AdminTokens(repo, FakeClock(), ttl=60)
    token, secret = await tokens.create(tenant_id="1", name="ci")
    assert secret.reveal().startswith(TOKEN_PREFIX) and len(secret.reveal()) > 40
    assert token_hash(secret.reveal()) in repo.by_hash
    for header in (f"Bearer {secret.reveal()}", f"bearer  {secret.reveal()} "):
        assert (await tokens.authenticate(header)).id == token.id
    assert repo.reads == 1 and repo.touches == 1


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Basic abc", "Bearer kt_unknown", "Bearer " + "k" * 129]
)
async def test_anything_but_an_active_token_is_refused_alike(header: str | None) -> None:
    tokens = AdminTokens(MemoryTokens(), FakeClock())
    with pytest.raises(MissingAuthorization):
        await tokens.authenticate(header)


async def test_a_revoked_token_is_refused_once_the_cache_lapses() -> None:
    repo = MemoryTokens()
    tokens = AdminTokens(repo, FakeClock(), ttl=0)
    token, secret = await tokens.create(tenant_id=None)
    await tokens.authenticate(f"Bearer {secret.reveal()}")
    await tokens.revoke(token.id)
    with pytest.raises(MissingAuthorization):
        await tokens.authenticate(f"Bearer {secret.reveal()}")


async def test_a_name_must_be_printable() -> None:
    with pytest.raises(InvalidParameterValue):
        await AdminTokens(MemoryTokens(), FakeClock()).create(tenant_id=None, name="a\x1b[2J")


async def test_a_token_is_found_by_id_while_active() -> None:
    repo = MemoryTokens()
    tokens = AdminTokens(repo, FakeClock(), ttl=0)
    token, _ = await tokens.create(tenant_id="1")
    assert (await tokens.active_by_id(token.id)) == token
    assert await tokens.active_by_id("at-000000000000") is None
    await tokens.revoke(token.id)
    assert await tokens.active_by_id(token.id) is None
