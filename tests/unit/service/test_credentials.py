"""Unit tests of ``keyturn.service.credentials``: what a stranger's key ids may cost. An id
longer than ``MAX_KEY_ID_LENGTH`` is unknown without a store read and is not cached; unknown
ids are remembered only in a bounded negative cache; existing keys are cached for the TTL and
read again after it; the error message never repeats a long id."""

from __future__ import annotations

from typing import cast

import pytest

from keyturn.core.errors import UnknownAccessKey
from keyturn.core.model import AccessKey
from keyturn.core.secrets import Secret
from keyturn.core.store_ports import KeyRepo
from keyturn.service.credentials import MAX_CACHED_MISSES, MAX_KEY_ID_LENGTH, Credentials


class Keys:
    """A key store that counts its reads."""

    def __init__(self, *keys: AccessKey) -> None:
        self.keys = {key.id: key for key in keys}
        self.reads: list[str] = []

    async def get_access_key(self, key_id: str) -> AccessKey | None:
        self.reads.append(key_id)
        return self.keys.get(key_id)


def repo(keys: Keys) -> KeyRepo:
    return cast(KeyRepo, keys)  # the one method credentials use


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr("keyturn.service.credentials.time.monotonic", clock)
    return clock


def key(key_id: str = "AKIDknown", *, enabled: bool = True) -> AccessKey:
    return AccessKey(id=key_id, tenant_id="1300000001", secret=Secret("s"), enabled=enabled)


async def unknown(credentials: Credentials, key_id: str) -> str:
    with pytest.raises(UnknownAccessKey) as caught:
        await credentials.access_key(key_id)
    return caught.value.message


async def test_overlong_ids_are_unknown_without_a_store_read(clock: Clock) -> None:
    keys = Keys(key("A" * MAX_KEY_ID_LENGTH), key("A" * (MAX_KEY_ID_LENGTH + 1)))
    credentials = Credentials(repo(keys))
    assert (await credentials.access_key("A" * MAX_KEY_ID_LENGTH)).id == "A" * MAX_KEY_ID_LENGTH
    for size in (MAX_KEY_ID_LENGTH + 1, 1024 * 1024):
        message = await unknown(credentials, "A" * size)
        assert len(message) < 120  # the id is not repeated in full
    assert keys.reads == ["A" * MAX_KEY_ID_LENGTH]
    assert await unknown(credentials, "") and keys.reads == ["A" * MAX_KEY_ID_LENGTH]


async def test_unknown_ids_are_cached_within_a_bound(clock: Clock) -> None:
    keys = Keys()
    credentials = Credentials(repo(keys))
    await unknown(credentials, "AKIDnobody")
    await unknown(credentials, "AKIDnobody")
    assert keys.reads == ["AKIDnobody"]  # a retrying client costs one read per TTL
    clock.now += 1.0
    await unknown(credentials, "AKIDnobody")
    assert keys.reads == ["AKIDnobody"] * 2

    for n in range(10 * MAX_CACHED_MISSES):
        await unknown(credentials, f"AKIDflood{n}")
    assert len(credentials._missing) <= MAX_CACHED_MISSES
    assert not credentials._found
    # The oldest misses were dropped first: the first flood id is read again, the last is not.
    reads = len(keys.reads)
    await unknown(credentials, "AKIDflood0")
    await unknown(credentials, f"AKIDflood{10 * MAX_CACHED_MISSES - 1}")
    assert keys.reads[reads:] == ["AKIDflood0"]


async def test_existing_keys_are_cached_for_the_ttl(clock: Clock) -> None:
    keys = Keys(key())
    credentials = Credentials(repo(keys))
    for _ in range(3):
        assert (await credentials.access_key("AKIDknown")).tenant_id == "1300000001"
    assert keys.reads == ["AKIDknown"]
    clock.now += 1.0
    keys.keys["AKIDknown"] = key(enabled=False)  # revoked from another process
    await unknown(credentials, "AKIDknown")
    assert keys.reads == ["AKIDknown"] * 2


async def test_a_key_created_after_a_miss_works_after_the_ttl(clock: Clock) -> None:
    keys = Keys()
    credentials = Credentials(repo(keys))
    await unknown(credentials, "AKIDlater")
    keys.keys["AKIDlater"] = key("AKIDlater")
    await unknown(credentials, "AKIDlater")
    clock.now += 1.0
    assert (await credentials.access_key("AKIDlater")).id == "AKIDlater"
    assert "AKIDlater" not in credentials._missing
