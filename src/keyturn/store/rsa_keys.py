"""Per-tenant RSA-2048 key pairs for passwords sent encrypted (``EncryptedPassword``,
``EncryptPassword=true``): the ``PasswordCipher`` port.

A pair is created on first use and kept in ``tenant_rsa_keys`` with the private key sealed by
the ``SecretBox``. Decryption accepts PKCS#1 v1.5 (what the Tencent SDK documentation names)
and OAEP with SHA-256 or SHA-1. Every failure gives the same error, so the answer tells a
caller nothing about why a ciphertext was refused. Loaded private keys are cached in memory
per tenant (parsing a PEM costs milliseconds). Imports: SQLAlchemy, cryptography,
``keyturn.core`` and the store's own modules.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from keyturn.core.errors import InvalidParameterValue
from keyturn.core.ports import PublicKeyInfo
from keyturn.core.secrets import Secret
from keyturn.store.base import SqlDatabase, guarded, upsert_insert
from keyturn.store.schema import tenant_rsa_keys

# OAEP first: its check fails loudly. PKCS#1 v1.5 last, because OpenSSL's implicit rejection
# answers a ciphertext with bad padding with pseudo-random bytes instead of an error; those are
# refused below (not UTF-8, empty, or with control characters: all but about 0.3% of them) or
# by the password policy that every decrypted password meets (8 characters at least: random
# bytes that long are printable UTF-8 about once in a million).
_PADDINGS = (
    padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
    padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None),
    padding.PKCS1v15(),
)
#: Longest password any product accepts, in bytes (Huawei's 64 characters, UTF-8).
_MAX_PLAINTEXT = 256


def _context(tenant_id: str) -> str:
    return f"tenant:{tenant_id}:rsa_private_key"


def _generate() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(der).decode()


def _info(der_base64: str) -> PublicKeyInfo:
    public = serialization.load_der_public_key(base64.b64decode(der_base64))
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return PublicKeyInfo(der_base64=der_base64, pem=pem)


class SqlRsaKeys:
    """The ``PasswordCipher`` port over the tables of ``db``."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db
        self._private: dict[str, rsa.RSAPrivateKey] = {}

    @guarded
    async def public_key(self, tenant_id: str) -> PublicKeyInfo:
        row = await self._row(tenant_id)
        if row is None:
            return await self.rotate(tenant_id, replace=False)
        return _info(row.public_key)

    @guarded
    async def rotate(self, tenant_id: str, *, replace: bool = True) -> PublicKeyInfo:
        private, public = await asyncio.to_thread(_generate)
        values = {
            "tenant_id": tenant_id,
            "private_key_sealed": self._db.seal(private, _context(tenant_id)),
            "public_key": public,
            "created_at": self._db.now(),
        }
        async with self._db.write() as conn:
            await self._db.require_tenant(conn, tenant_id)
            insert = upsert_insert(conn, tenant_rsa_keys).values(**values)
            if replace:
                stmt = insert.on_conflict_do_update(
                    index_elements=[tenant_rsa_keys.c.tenant_id], set_=values
                )
            else:
                # Two first uses at once: the first pair wins, the other is dropped.
                stmt = insert.on_conflict_do_nothing(index_elements=[tenant_rsa_keys.c.tenant_id])
            await conn.execute(stmt)
        self._private.pop(tenant_id, None)
        row = await self._row(tenant_id)
        assert row is not None
        return _info(row.public_key)

    @guarded
    async def decrypt(self, tenant_id: str, ciphertext_base64: str) -> Secret:
        refused = InvalidParameterValue("The encrypted password could not be decrypted.")
        try:
            ciphertext = base64.b64decode(ciphertext_base64, validate=True)
        except (binascii.Error, ValueError):
            raise refused from None
        key = await self._private_key(tenant_id)
        if key is None or len(ciphertext) != key.key_size // 8:
            raise refused
        for scheme in _PADDINGS:
            try:
                plain = key.decrypt(ciphertext, scheme)
            except ValueError:
                continue
            if len(plain) > _MAX_PLAINTEXT:
                break
            try:
                text = plain.decode("utf-8")
            except UnicodeDecodeError:
                break
            if not text or not text.isprintable():
                # No password is empty or holds control characters: such bytes are implicit
                # rejection's (about half of the ones that happen to be UTF-8, measured).
                break
            return Secret(text)
        raise refused

    async def _private_key(self, tenant_id: str) -> rsa.RSAPrivateKey | None:
        cached = self._private.get(tenant_id)
        if cached is not None:
            return cached
        row = await self._row(tenant_id)
        if row is None:
            return None
        pem = self._db.unseal(row.private_key_sealed, _context(tenant_id))
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            return None
        self._private[tenant_id] = key
        return key

    async def _row(self, tenant_id: str) -> Any:
        query = sa.select(tenant_rsa_keys).where(tenant_rsa_keys.c.tenant_id == tenant_id)
        async with self._db.read() as conn:
            return (await conn.execute(query)).first()
