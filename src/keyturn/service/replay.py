"""Replay protection: remember the nonces of verified requests for as long as their timestamp
could still be accepted, and refuse a nonce seen again within that time.

Dialects call ``NonceGuard.remember`` only after a request's signature verified, so forged
requests cannot use up nonces. The memory is this process's own and bounded: when it is full,
the entries closest to expiry are dropped first (``heapq`` keeps them ordered). A multi-node
deployment would back it with the shared store; one node is the default deployment.
"""

from __future__ import annotations

import heapq

from keyturn.core.errors import NonceReused
from keyturn.core.ports import Clock

#: The most nonces remembered at once (about 100 bytes each).
DEFAULT_CAPACITY = 200_000


class NonceGuard:
    """Refuse a (scope, nonce) pair seen within its time to live."""

    def __init__(self, clock: Clock, *, capacity: int = DEFAULT_CAPACITY) -> None:
        self._clock = clock
        self._capacity = capacity
        self._expiry: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, str, str]] = []

    def remember(self, scope: str, nonce: str, ttl_seconds: float) -> None:
        """Record ``nonce`` for ``scope`` (an access key id); ``NonceReused`` if it is known."""
        now = self._clock.now().timestamp()
        self._expire(now)
        key = (scope, nonce)
        expires = self._expiry.get(key)
        if expires is not None and expires > now:
            raise NonceReused("Specified signature nonce was used already.")
        while len(self._expiry) >= self._capacity and self._heap:
            self._pop()
        self._expiry[key] = now + ttl_seconds
        heapq.heappush(self._heap, (now + ttl_seconds, scope, nonce))

    def __len__(self) -> int:
        return len(self._expiry)

    def _expire(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            self._pop()

    def _pop(self) -> None:
        expires, scope, nonce = heapq.heappop(self._heap)
        # A key re-remembered later has a newer expiry; only drop the entry this heap item owns.
        if self._expiry.get((scope, nonce)) == expires:
            del self._expiry[(scope, nonce)]
