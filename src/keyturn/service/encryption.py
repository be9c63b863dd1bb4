"""Passwords sent encrypted: hand clients their tenant's public key and decrypt what they send.

The vendors let a client encrypt a new password with an RSA-2048 public key
(``EncryptedPassword`` in TDSQL, ``EncryptPassword=true`` in Redis). Each tenant has its own key
pair; a key of one tenant never opens another's ciphertext.
"""

from __future__ import annotations

from keyturn.core.ports import PasswordCipher, PublicKeyInfo
from keyturn.core.secrets import Secret
from keyturn.service.context import Caller


class Encryption:
    """The caller's tenant's key pair."""

    def __init__(self, cipher: PasswordCipher) -> None:
        self._cipher = cipher

    async def public_key(self, caller: Caller) -> PublicKeyInfo:
        return await self._cipher.public_key(caller.tenant_id)

    async def decrypt(self, caller: Caller, ciphertext_base64: str) -> Secret:
        return await self._cipher.decrypt(caller.tenant_id, ciphertext_base64)

    async def rotate(self, tenant_id: str) -> PublicKeyInfo:
        return await self._cipher.rotate(tenant_id)
