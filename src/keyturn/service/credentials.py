"""Access-key look-up for dialects: a key id in, the tenant and signing secret out.

Every signed request needs its key, so answers are cached for ``ttl`` seconds (one second by
default): a key revoked with the CLI, from another process, stops working within that time.
Disabled and unknown keys are indistinguishable to the caller (both ``UnknownAccessKey``).
"""

from __future__ import annotations

import time

from keyturn.core.errors import UnknownAccessKey
from keyturn.core.model import AccessKey
from keyturn.core.ports import KeyRepo

#: Cached answers at most; the cache starts over when full (unknown ids cannot grow it).
MAX_CACHED = 10_000


class Credentials:
    """Resolve access keys for signature verification."""

    def __init__(self, keys: KeyRepo, *, ttl: float = 1.0) -> None:
        self._keys = keys
        self._ttl = ttl
        self._cache: dict[str, tuple[float, AccessKey | None]] = {}

    async def access_key(self, key_id: str) -> AccessKey:
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached is not None and now - cached[0] < self._ttl:
            key = cached[1]
        else:
            key = await self._keys.get_access_key(key_id) if key_id else None
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[key_id] = (now, key)
        if key is None or not key.enabled:
            raise UnknownAccessKey(f"the access key {key_id!r} does not exist or is disabled")
        return key
