"""Unit tests of the in-memory guards: the nonce replay guard (expiry, capacity, scopes) and the
change guard that locks password changes after repeated wrong old passwords."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from keyturn.core.errors import NonceReused
from keyturn.service.accounts import ChangeGuard
from keyturn.service.replay import NonceGuard


class FakeClock:
    def __init__(self) -> None:
        self.moment = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


def test_nonce_is_refused_within_its_ttl_and_accepted_after() -> None:
    clock = FakeClock()
    guard = NonceGuard(clock)
    guard.remember("AK1", "n1", 900)
    with pytest.raises(NonceReused):
        guard.remember("AK1", "n1", 900)
    guard.remember("AK2", "n1", 900)  # another key's nonce space
    clock.advance(901)
    guard.remember("AK1", "n1", 900)
    assert len(guard) == 1  # the expired AK2 entry is gone, AK1's is fresh


def test_nonce_memory_is_bounded() -> None:
    clock = FakeClock()
    guard = NonceGuard(clock, capacity=100)
    for i in range(1000):
        guard.remember("AK", f"n{i}", 900)
    assert len(guard) == 100
    with pytest.raises(NonceReused):
        guard.remember("AK", "n999", 900)


def test_change_guard_locks_after_five_failures_then_unlocks() -> None:
    clock = FakeClock()
    guard = ChangeGuard(clock)
    key = ("t", "i", "default")
    assert [guard.failed(key) for _ in range(5)] == [4, 3, 2, 1, 0]
    assert guard.seconds_locked(key) == pytest.approx(300)
    clock.advance(299)
    assert guard.seconds_locked(key) == pytest.approx(1)
    clock.advance(2)
    assert guard.seconds_locked(key) == 0
    assert guard.failed(key) == 4  # a fresh count after the lock


def test_change_guard_success_resets_the_count() -> None:
    guard = ChangeGuard(FakeClock())
    key = ("t", "i", "default")
    guard.failed(key)
    guard.failed(key)
    guard.succeeded(key)
    assert guard.failed(key) == 4
    assert guard.seconds_locked(("t", "other", "default")) == 0
