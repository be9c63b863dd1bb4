"""Ports: the small interfaces the service needs for crypto, auditing and time.

The service receives implementations of these protocols from the composition root
(``keyturn.bootstrap``); it never imports an adapter. Here: sealing secrets at rest
(``SecretBox``), the tenants' RSA password cipher (``PasswordCipher``), the fail-closed audit log
(``AuditLog``) and the clock. The engine drivers' ports are in ``keyturn.core.engine_ports``, the
persistent state's in ``keyturn.core.store_ports``. Requests and answers are frozen dataclasses
so fields can be added without breaking implementations.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from keyturn.core.audit import AuditEvent
from keyturn.core.secrets import Secret


class SecretBox(Protocol):
    """Authenticated encryption of secrets at rest. ``context`` binds a sealed value to its
    place (row and column), so a value copied elsewhere does not open."""

    def seal(self, plaintext: str, *, context: str) -> str: ...

    def unseal(self, token: str, *, context: str) -> str: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicKeyInfo:
    """A tenant's RSA public key: base64 DER (SubjectPublicKeyInfo) and PEM."""

    der_base64: str
    pem: str


class PasswordCipher(Protocol):
    """Per-tenant RSA-2048 key pairs: clients encrypt passwords with the public key
    (PKCS#1 v1.5, or OAEP), keyturn decrypts them. Private keys are sealed at rest."""

    async def public_key(self, tenant_id: str) -> PublicKeyInfo:
        """The tenant's public key, creating the pair on first use."""
        ...

    async def decrypt(self, tenant_id: str, ciphertext_base64: str) -> Secret:
        """``InvalidParameterValue`` when the text does not decrypt with the tenant's key."""
        ...

    async def rotate(self, tenant_id: str) -> PublicKeyInfo:
        """Replace the tenant's key pair; ciphertexts made for the old key stop working."""
        ...


class AuditLog(Protocol):
    """The append-only audit log. ``append`` must raise if the event could not be stored
    durably: a change whose record cannot be written is not made (fail-closed)."""

    async def append(self, event: AuditEvent) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime: ...
