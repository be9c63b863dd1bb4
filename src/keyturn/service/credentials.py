"""Access-key look-up for dialects: a key id in, the tenant and signing secret out.

Every signed request needs its key, so answers are cached for ``ttl`` seconds
(``KEY_CACHE_SECONDS``, half a second, counted from before the store read): a key revoked or
rotated with the CLI, or by another node on the same store, stops working on every node within
that time, well inside the one second keyturn promises.
Disabled and unknown keys are indistinguishable to the caller (both ``UnknownAccessKey``).

Key ids come from unauthenticated requests, so nothing a stranger sends may stay in memory
unbounded: an id longer than ``MAX_KEY_ID_LENGTH`` is unknown without a store read and is never
cached, and ids the store does not know are remembered only in a small negative cache that
drops its oldest entry when full. Only keys that exist fill the positive cache.
"""

from __future__ import annotations

import time

from keyturn.core.errors import UnknownAccessKey
from keyturn.core.model import AccessKey
from keyturn.core.store_ports import KeyRepo

#: The longest access key id looked up; every vendor's ids are far shorter (Tencent 36,
#: Alibaba 24-30, Huawei 20), so a longer one cannot name a key.
MAX_KEY_ID_LENGTH = 128
#: Cached existing keys at most; the cache starts over when full.
MAX_CACHED = 10_000
#: Cached unknown ids at most (oldest dropped first): a flood of made-up ids costs at most
#: this many short strings, while a misconfigured client retrying one id costs no store reads.
MAX_CACHED_MISSES = 256
#: How long a key (or its absence) is believed without asking the store again.
KEY_CACHE_SECONDS = 0.5
#: How much of an unknown id an error message repeats.
_SHOWN = 40


class Credentials:
    """Resolve access keys for signature verification."""

    def __init__(self, keys: KeyRepo, *, ttl: float = KEY_CACHE_SECONDS) -> None:
        self._keys = keys
        self._ttl = ttl
        self._found: dict[str, tuple[float, AccessKey]] = {}
        #: Insertion-ordered, so the first entry is the oldest.
        self._missing: dict[str, float] = {}

    async def access_key(self, key_id: str) -> AccessKey:
        key = await self._lookup(key_id) if key_id and len(key_id) <= MAX_KEY_ID_LENGTH else None
        if key is None or not key.enabled:
            shown = key_id if len(key_id) <= _SHOWN else key_id[:_SHOWN] + "..."
            raise UnknownAccessKey(f"the access key {shown!r} does not exist or is disabled")
        return key

    async def _lookup(self, key_id: str) -> AccessKey | None:
        now = time.monotonic()
        found = self._found.get(key_id)
        if found is not None and now - found[0] < self._ttl:
            return found[1]
        missed = self._missing.get(key_id)
        if missed is not None and now - missed < self._ttl:
            return None
        key = await self._keys.get_access_key(key_id)
        self._found.pop(key_id, None)
        self._missing.pop(key_id, None)
        if key is None:
            if len(self._missing) >= MAX_CACHED_MISSES:
                del self._missing[next(iter(self._missing))]
            self._missing[key_id] = now
        else:
            if len(self._found) >= MAX_CACHED:
                self._found.clear()
            self._found[key_id] = (now, key)
        return key
