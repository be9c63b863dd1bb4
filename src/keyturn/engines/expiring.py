"""A small map whose entries expire: what an engine keeps of one step for a later one.

Three things an engine carries from one step of a reset to a later one are short-lived and
per key: the role a health probe saw of a node (``probed_roles``), the SCRAM keys of the
verifier a PostgreSQL change wrote and the verifier prepared ahead of a change
(``postgres_scram``). Each is kept for a few seconds, must never grow without bound (a
client chooses how many instances and accounts it resets), and is found or not found, never
waited for. ``Expiring`` is that map, once: entries expire ``ttl`` seconds after they were
put, at most ``most`` are kept (the oldest go first), and an entry can be read (``get``) or
taken once (``take``). Every entry lives for the same ``ttl``, so the insertion order is the
expiry order and dropping the expired ones costs only the entries dropped. Pure standard
library.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Expiring(Generic[K, V]):
    """At most ``most`` entries, each for ``ttl`` seconds (of ``clock``) after it was put."""

    def __init__(
        self, ttl: float, most: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if most < 1:
            raise ValueError("an expiring map keeps at least one entry")
        self._ttl = ttl
        self._most = most
        self._clock = clock
        self._entries: dict[K, tuple[V, float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` for ``key`` (replacing an older one), dropping what has expired and,
        when full, the oldest entries."""
        now = self._clock()
        self._entries.pop(key, None)
        self._drop_expired(now)
        while len(self._entries) >= self._most:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (value, now + self._ttl)

    def get(self, key: K) -> V | None:
        """The value kept for ``key``, if it has not expired."""
        found = self._entries.get(key)
        if found is None or found[1] <= self._clock():
            return None
        return found[0]

    def take(self, key: K) -> V | None:
        """The value kept for ``key``, if it has not expired, which is no longer kept."""
        found = self._entries.pop(key, None)
        if found is None or found[1] <= self._clock():
            return None
        return found[0]

    def discard(self, key: K) -> None:
        """Keep nothing for ``key``."""
        self._entries.pop(key, None)

    def _drop_expired(self, now: float) -> None:
        # Oldest first: the first entry that has not expired ends the walk.
        while self._entries:
            oldest = next(iter(self._entries))
            if self._entries[oldest][1] > now:
                return
            del self._entries[oldest]
