"""Unit tests of the replay guard over an in-memory replay memory: expiry, scopes, no eviction
(one key's nonces never push another's out), and the periodic purge of expired nonces."""

from __future__ import annotations

import pytest

from keyturn.core.errors import NonceReused
from keyturn.service import replay
from keyturn.service.replay import ReplayGuard
from tests.support.fakes import FakeClock, MemoryReplay


async def test_nonce_is_refused_within_its_ttl_and_accepted_after() -> None:
    clock = FakeClock()
    guard = ReplayGuard(MemoryReplay(), clock)
    await guard.remember("AK1", "n1", 900)
    with pytest.raises(NonceReused):
        await guard.remember("AK1", "n1", 900)
    await guard.remember("AK2", "n1", 900)  # another key's nonce space
    clock.advance(901)
    await guard.remember("AK1", "n1", 900)


async def test_nothing_is_evicted_however_many_nonces_another_key_sends() -> None:
    clock = FakeClock()
    guard = ReplayGuard(MemoryReplay(), clock)
    await guard.remember("victim", "v", 900)
    for i in range(5000):
        await guard.remember("flooder", f"n{i}", 900)
    with pytest.raises(NonceReused):
        await guard.remember("victim", "v", 900)


async def test_expired_nonces_are_purged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay, "PURGE_EVERY", 10)
    clock = FakeClock()
    memory = MemoryReplay()
    guard = ReplayGuard(memory, clock)
    for i in range(10):
        await guard.remember("AK", f"old{i}", 60)
    clock.advance(61)
    for i in range(10):
        await guard.remember("AK", f"new{i}", 60)
    assert len(memory.expiry) <= 11
