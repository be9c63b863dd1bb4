"""Admin tokens: make, list and revoke them, and authenticate the bearer of one.

``authenticate`` is on every admin API call, so answers are cached for ``ttl`` seconds
(``KEY_CACHE_SECONDS``, half a second, as access keys): a token revoked with the CLI or by another
node on the same store stops working on every node within that time, inside the one second
keyturn promises. Presented tokens are looked up by their SHA-256 only; the cache is keyed by it
too, so no presented token stays in memory, and it is bounded: unknown hashes in a small cache
that drops its oldest entry, known tokens in one that starts over when full. A use is recorded
(``last_used_at``) at most once a minute per token and node, so a busy client does not turn
every call into a store write.
"""

from __future__ import annotations

import logging
import time

from keyturn.core.admin_tokens import (
    MAX_TOKEN_LENGTH,
    AdminToken,
    AdminTokenRepo,
    new_token,
    new_token_id,
    token_hash,
)
from keyturn.core.errors import InvalidParameterValue, MissingAuthorization, NotFound
from keyturn.core.ports import Clock
from keyturn.core.secrets import Secret
from keyturn.service.credentials import KEY_CACHE_SECONDS, MAX_CACHED, MAX_CACHED_MISSES

log = logging.getLogger(__name__)

#: Seconds between two ``last_used_at`` writes of one token by one node.
TOUCH_EVERY = 60.0
MAX_NAME_LENGTH = 200


class AdminTokens:
    """Admin tokens in the store, and the bearer check of the admin API."""

    def __init__(self, repo: AdminTokenRepo, clock: Clock, *, ttl: float = KEY_CACHE_SECONDS):
        self._repo = repo
        self._clock = clock
        self._ttl = ttl
        self._found: dict[str, tuple[float, AdminToken]] = {}
        self._missing: dict[str, float] = {}
        self._touched: dict[str, float] = {}
        self._by_id: tuple[float, dict[str, AdminToken]] = (float("-inf"), {})

    async def create(self, *, tenant_id: str | None, name: str = "") -> tuple[AdminToken, Secret]:
        """A new token for ``tenant_id`` (None: every tenant) and the token itself, which is
        never stored and cannot be shown again."""
        if len(name) > MAX_NAME_LENGTH or any(not c.isprintable() for c in name):
            raise InvalidParameterValue(
                f"a token name is at most {MAX_NAME_LENGTH} printable characters"
            )
        secret = new_token()
        token = AdminToken(
            id=new_token_id(), name=name, tenant_id=tenant_id, created_at=self._clock.now()
        )
        await self._repo.put_admin_token(token, token_hash(secret))
        return token, Secret(secret)

    async def list(self) -> list[AdminToken]:
        return await self._repo.list_admin_tokens()

    async def revoke(self, token_id: str) -> None:
        if not await self._repo.revoke_admin_token(token_id, self._clock.now()):
            raise NotFound(f"no active admin token {token_id!r}")

    async def authenticate(self, authorization: str | None) -> AdminToken:
        """The active token an ``Authorization: Bearer ...`` header presents;
        ``MissingAuthorization`` for no header, another scheme, or an unknown or revoked
        token (alike, so a caller learns nothing about which)."""
        scheme, _, presented = (authorization or "").strip().partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented:
            raise MissingAuthorization("send an admin token as 'Authorization: Bearer <token>'")
        token = await self._lookup(presented) if len(presented) <= MAX_TOKEN_LENGTH else None
        if token is None or not token.active:
            raise MissingAuthorization("the admin token is unknown or revoked")
        await self._touch(token)
        return token

    async def active_by_id(self, token_id: str) -> AdminToken | None:
        """The active token of that id (the console's sessions name a token by id), or None.
        Tokens are few: the whole list is read and kept ``ttl`` seconds, so a revocation ends
        the token's sessions within the same bound as its bearer calls."""
        now = time.monotonic()
        at, known = self._by_id
        if now - at >= self._ttl:
            known = {t.id: t for t in await self._repo.list_admin_tokens()}
            self._by_id = (now, known)
        token = known.get(token_id)
        return token if token is not None and token.active else None

    async def _lookup(self, presented: str) -> AdminToken | None:
        digest = token_hash(presented)
        now = time.monotonic()
        found = self._found.get(digest)
        if found is not None and now - found[0] < self._ttl:
            return found[1]
        missed = self._missing.get(digest)
        if missed is not None and now - missed < self._ttl:
            return None
        token = await self._repo.admin_token_by_hash(digest)
        self._found.pop(digest, None)
        self._missing.pop(digest, None)
        if token is None:
            if len(self._missing) >= MAX_CACHED_MISSES:
                del self._missing[next(iter(self._missing))]
            self._missing[digest] = now
        else:
            if len(self._found) >= MAX_CACHED:
                self._found.clear()
            self._found[digest] = (now, token)
        return token

    async def _touch(self, token: AdminToken) -> None:
        now = time.monotonic()
        if now - self._touched.get(token.id, float("-inf")) < TOUCH_EVERY:
            return
        if len(self._touched) >= MAX_CACHED:
            self._touched.clear()
        self._touched[token.id] = now
        try:
            await self._repo.touch_admin_token(token.id, self._clock.now())
        except Exception:
            # Only bookkeeping: the call goes on.
            log.warning("could not record the use of admin token %s", token.id)
