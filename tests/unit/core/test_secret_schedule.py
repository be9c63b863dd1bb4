"""Unit tests of the rotation schedule arithmetic (no I/O): slots, windows, the one catch-up,
backoff, password generation per product, and spec validation."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from keyturn.core.errors import InvalidParameterValue
from keyturn.core.passwords import PRODUCT_POLICIES, generate
from keyturn.core.secret_manager import SecretSpec, SecretVendor
from keyturn.core.secret_schedule import (
    after_success,
    anchor,
    backoff,
    catch_up_at,
    slot_after,
    slot_at_or_before,
    window_open,
)

DAY = timedelta(days=1)
T0 = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def test_the_anchor_is_the_first_begin_at_or_after_creation() -> None:
    assert anchor(T0, None) == T0
    assert anchor(T0, time(2, 0)) == at(2, 2)
    assert anchor(T0, time(10, 30)) == T0
    assert anchor(T0, time(23, 0)) == at(1, 23)


def test_slots_follow_the_period_from_the_anchor() -> None:
    first = at(2, 2)
    period = timedelta(days=30)
    assert slot_after(first, period, T0) == first
    assert slot_after(first, period, first) == first + period
    assert slot_after(first, period, first + period - timedelta(seconds=1)) == first + period
    assert slot_at_or_before(first, period, T0) is None
    assert slot_at_or_before(first, period, first + 3 * period + DAY) == first + 3 * period


def test_missed_slots_collapse_into_one_catch_up() -> None:
    first = at(1, 0)
    period = timedelta(hours=1)
    # Down for five hours: one rotation at restart, and the next slot is the next one after it.
    back = at(1, 5, 20)
    assert catch_up_at(first, back, begin=None, window=None) == back
    assert after_success(first, period, back) == at(1, 6)


def test_the_window_bounds_how_late_a_slot_starts() -> None:
    slot = at(2, 2)
    window = timedelta(hours=2)
    assert not window_open(slot, window, slot - timedelta(seconds=1))
    assert window_open(slot, window, slot)
    assert window_open(slot, window, at(2, 4))
    assert not window_open(slot, window, at(2, 4, 1))
    assert window_open(slot, None, at(20, 0))


def test_a_missed_window_catches_up_at_the_next_opening_once() -> None:
    slot = at(2, 2)
    window = timedelta(hours=2)
    begin = time(2, 0)
    # Inside the window: now.
    assert catch_up_at(slot, at(2, 3), begin=begin, window=window) == at(2, 3)
    # After it closed: the next day's opening, not now and not one per missed day.
    assert catch_up_at(slot, at(2, 10), begin=begin, window=window) == at(3, 2)
    assert catch_up_at(slot, at(9, 1), begin=begin, window=window) == at(9, 2)
    # Days later but inside that day's window: now.
    assert catch_up_at(slot, at(9, 3), begin=begin, window=window) == at(9, 3)
    # A window across midnight.
    late = time(23, 0)
    assert catch_up_at(at(2, 23), at(4, 0, 30), begin=late, window=window) == at(4, 0, 30)
    # Without a begin, or with a day-long window, a late slot fires at once.
    assert catch_up_at(slot, at(5, 10), begin=None, window=window) == at(5, 10)
    assert catch_up_at(slot, at(5, 10), begin=begin, window=DAY) == at(5, 10)


def test_backoff_doubles_up_to_a_cap_and_a_quarter_period() -> None:
    waits = [backoff(n) for n in range(1, 10)]
    assert waits[:4] == [timedelta(seconds=s) for s in (30, 60, 120, 240)]
    assert waits[-1] == timedelta(hours=1)
    assert backoff(5, timedelta(seconds=8)) == timedelta(seconds=2)
    assert backoff(0) == timedelta(seconds=30)
    assert backoff(10_000) == timedelta(hours=1)


@pytest.mark.parametrize("product", sorted(PRODUCT_POLICIES))
def test_generated_passwords_meet_the_products_rules(product: str) -> None:
    policy = PRODUCT_POLICIES[product]
    seen = set()
    for _ in range(200):
        password = generate(policy)
        policy.check(password)
        assert len(password) == min(32, policy.max_length)
        seen.add(password)
    assert len(seen) == 200


def spec(**changes: object) -> SecretSpec:
    fields: dict[str, object] = {
        "tenant_id": "1300000001",
        "name": "orders-redis",
        "vendor": SecretVendor.TENCENT_SSM,
        "instance_id": "crs-5a4py64p",
        "account": "app",
    }
    fields.update(changes)
    return SecretSpec(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "bad name"},
        {"name": ""},
        {"name": "x" * 129},
        {"account": ""},
        {"rotation": timedelta(0)},
        {"rotation": timedelta(days=366)},
        {"rotation": DAY, "window": timedelta(days=2)},
        {"window": timedelta(0)},
        {"overlap": timedelta(0)},
        {"rotation": timedelta(hours=1), "overlap": timedelta(hours=1)},
        {"description": "d" * 2049},
    ],
)
def test_a_spec_out_of_bounds_is_refused(changes: dict[str, object]) -> None:
    with pytest.raises(InvalidParameterValue):
        spec(**changes)


def test_a_spec_in_bounds_is_accepted() -> None:
    made = spec(
        rotation=timedelta(days=30), window=timedelta(hours=2), overlap=timedelta(minutes=10)
    )
    assert made.rotation == timedelta(days=30)
