"""Replay protection: remember the nonces (or signatures) of verified requests for as long as
their timestamp could still be accepted, and refuse one seen again within that time.

The memory is the store's (``ReplayRepo``), not this process's: a captured request stays
refused after a restart and on every node sharing the store, and one insert decides atomically
which of two concurrent copies wins. Nothing is evicted early, so one tenant can never push
another's nonces out; the table's size is bounded instead by when a nonce is remembered: only
for a call that verified and passed authorization and its tenant's rate limit (the signed-call
pipeline's rule), so it grows at most by the rate limits times the clock window, and expired
rows are purged every ``PURGE_EVERY`` remembered nonces.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from keyturn.core.errors import DomainError, NonceReused
from keyturn.core.ports import Clock
from keyturn.core.store_ports import ReplayRepo

log = logging.getLogger(__name__)

#: Remembered nonces between two purges of expired ones.
PURGE_EVERY = 1000


class ReplayGuard:
    """Refuse a (scope, nonce) pair seen within its time to live."""

    def __init__(self, repo: ReplayRepo, clock: Clock) -> None:
        self._repo = repo
        self._clock = clock
        self._until_purge = 1

    async def remember(self, scope: str, nonce: str, ttl_seconds: float) -> None:
        """Record ``nonce`` for ``scope`` (an access key id); ``NonceReused`` if it is known."""
        now = self._clock.now()
        self._until_purge -= 1
        if self._until_purge <= 0:
            self._until_purge = PURGE_EVERY
            await self._repo.purge_nonces(now)
        fresh = await self._repo.remember_nonce(
            scope, nonce, expires_at=now + timedelta(seconds=ttl_seconds), now=now
        )
        if not fresh:
            raise NonceReused("Specified signature nonce was used already.")

    async def forget(self, scope: str, nonce: str) -> None:
        """Give a remembered nonce back: its call was admitted but did not run after all (the
        audit record before a change could not be written). Best effort: a failure leaves the
        nonce remembered, which refuses a retry but never lets a replay through."""
        try:
            await self._repo.forget_nonce(scope, nonce)
        except DomainError:
            log.warning("a nonce could not be forgotten; the same request will be refused")
