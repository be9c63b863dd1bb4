"""Access-key look-up for dialects: a key id in, the tenant and signing secret out.

Disabled and unknown keys are indistinguishable to the caller (both ``UnknownAccessKey``).
"""

from __future__ import annotations

from keyturn.core.errors import UnknownAccessKey
from keyturn.core.model import AccessKey
from keyturn.core.ports import KeyRepo


class Credentials:
    """Resolve access keys for signature verification."""

    def __init__(self, keys: KeyRepo) -> None:
        self._keys = keys

    async def access_key(self, key_id: str) -> AccessKey:
        key = await self._keys.get_access_key(key_id) if key_id else None
        if key is None or not key.enabled:
            raise UnknownAccessKey(f"the access key {key_id!r} does not exist or is disabled")
        return key
