"""``keyturn.engines.expiring``: the bounded map with expiry behind the engines' short-lived
memories (probed roles, SCRAM keys, prepared verifiers). No I/O."""

from __future__ import annotations

import pytest

from keyturn.engines.expiring import Expiring


def test_an_entry_is_read_until_taken() -> None:
    kept: Expiring[str, int] = Expiring(ttl=60.0, most=8)
    kept.put("a", 1)
    assert kept.get("a") == 1
    assert kept.get("a") == 1
    assert kept.take("a") == 1
    assert kept.take("a") is None
    assert kept.get("a") is None
    assert len(kept) == 0


def test_a_newer_entry_replaces_an_older_one() -> None:
    kept: Expiring[str, int] = Expiring(ttl=60.0, most=8)
    kept.put("a", 1)
    kept.put("a", 2)
    assert kept.take("a") == 2
    assert len(kept) == 0


def test_discard_forgets() -> None:
    kept: Expiring[str, int] = Expiring(ttl=60.0, most=8)
    kept.put("a", 1)
    kept.discard("a")
    kept.discard("never put")
    assert kept.get("a") is None


def test_when_full_the_oldest_go_first() -> None:
    kept: Expiring[int, int] = Expiring(ttl=60.0, most=3)
    for key in range(5):
        kept.put(key, key)
    assert len(kept) == 3
    assert [kept.get(key) for key in range(5)] == [None, None, 2, 3, 4]


def test_an_entry_put_again_is_the_newest() -> None:
    kept: Expiring[int, int] = Expiring(ttl=60.0, most=2)
    kept.put(1, 1)
    kept.put(2, 2)
    kept.put(1, 10)
    kept.put(3, 3)
    assert kept.get(2) is None
    assert kept.get(1) == 10


def test_expired_entries_are_not_found_and_are_dropped() -> None:
    now = [100.0]
    kept: Expiring[str, int] = Expiring(ttl=5.0, most=100, clock=lambda: now[0])
    kept.put("old", 1)
    now[0] = 103.0
    kept.put("young", 2)
    now[0] = 105.0  # "old" expires at 105: no longer found
    assert kept.get("old") is None
    assert kept.get("young") == 2
    kept.put("newest", 3)  # a put drops what has expired
    assert len(kept) == 2
    now[0] = 200.0
    assert kept.take("young") is None
    kept.put("last", 4)
    assert len(kept) == 1


def test_a_map_that_could_keep_nothing_is_refused() -> None:
    with pytest.raises(ValueError):
        Expiring(ttl=1.0, most=0)
