"""Admin tokens: bearer credentials of the admin API (``/admin/v1/``), scoped to one tenant or
to every tenant.

A token is ``kt_`` + 32 random bytes (URL-safe base64), shown once when it is made; the store
keeps only its SHA-256. A salted, slow hash (bcrypt, scrypt) protects low-entropy secrets such
as human passwords against offline guessing; a 256-bit random token cannot be guessed from its
hash whatever the speed of the hash, so one SHA-256 is enough and lets a request find its token
with one indexed equality look-up (no per-row comparison, no timing oracle on a prefix). The
token's ``id`` (``at-`` + 12 hex digits) is what lists, revocations and the audit log name: never
the token. Pure: stdlib only.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

#: Every token starts with this, so a leaked one is recognisable (secret scanners).
TOKEN_PREFIX = "kt_"
#: Longer presented tokens are not looked up (a real one is 46 characters).
MAX_TOKEN_LENGTH = 128


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_token_id() -> str:
    return "at-" + secrets.token_hex(6)


def token_hash(token: str) -> str:
    """What the store keeps and looks a presented token up by (see the module docstring)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminToken:
    """A stored admin token (never the token itself). ``tenant_id`` None: every tenant."""

    id: str
    name: str
    tenant_id: str | None
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @property
    def scope(self) -> str:
        return "*" if self.tenant_id is None else self.tenant_id

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class AdminTokenRepo(Protocol):
    """Admin tokens in the store, by id and by the hash of the token."""

    async def put_admin_token(self, token: AdminToken, digest: str) -> None: ...

    async def admin_token_by_hash(self, digest: str) -> AdminToken | None: ...

    async def list_admin_tokens(self) -> list[AdminToken]: ...

    async def revoke_admin_token(self, token_id: str, at: datetime) -> bool:
        """Whether an active token of that id was revoked now."""
        ...

    async def touch_admin_token(self, token_id: str, at: datetime) -> None:
        """Record a use (``last_used_at``)."""
        ...
