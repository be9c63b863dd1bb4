"""Unit tests of the change guard that locks password changes after repeated wrong old
passwords."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from keyturn.service.accounts import ChangeGuard


class FakeClock:
    def __init__(self) -> None:
        self.moment = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


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
