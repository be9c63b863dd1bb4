"""Per-tenant RSA key pairs (the PasswordCipher port) on every store backend."""

from __future__ import annotations

import base64
from collections.abc import Awaitable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from keyturn.bootstrap import open_admin_store
from keyturn.config import load_settings
from keyturn.core.errors import InvalidParameterValue
from keyturn.core.model import KeySource, Tenant
from keyturn.core.secrets import Secret
from tests.support.store_backends import StoreBackend


def encrypt(der_base64: str, text: str, scheme: padding.AsymmetricPadding) -> str:
    public = serialization.load_der_public_key(base64.b64decode(der_base64))
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048
    return base64.b64encode(public.encrypt(text.encode(), scheme)).decode()


async def refused_or_unusable(decrypting: Awaitable[Secret]) -> None:
    """A ciphertext made for another key is refused. Under PKCS#1 v1.5, OpenSSL's implicit
    rejection gives pseudo-random bytes instead of an error, so the store cannot always tell:
    what it then lets through (measured: about 0.3% of such ciphertexts) is never the password
    and is shorter than any product's minimum (8), so the password policy refuses it."""
    try:
        plain = await decrypting
    except InvalidParameterValue:
        return
    assert plain.reveal() != "Secret-Pa55"
    assert len(plain.reveal()) < 8


async def test_keys_are_per_tenant_rotatable_and_sealed(
    tmp_path: Path, store_backend: StoreBackend
) -> None:
    env = {} if store_backend.sqlite else {"KEYTURN_DATABASE_URL": store_backend.url}
    store = await open_admin_store(load_settings(data_dir=tmp_path, env=env))
    try:
        for tenant in ("1", "2"):
            await store.put_tenant(Tenant(id=tenant, name=tenant), KeySource.CLI)
        one, two = await store.public_key("1"), await store.public_key("2")
        assert one.der_base64 != two.der_base64
        assert (await store.public_key("1")) == one  # stable until rotated
        oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
        for scheme in (padding.PKCS1v15(), oaep):
            ciphertext = encrypt(one.der_base64, "Secret-Pa55", scheme)
            assert (await store.decrypt("1", ciphertext)).reveal() == "Secret-Pa55"
            await refused_or_unusable(store.decrypt("2", ciphertext))
        for junk in ("not base64!", base64.b64encode(b"short").decode(), ""):
            with pytest.raises(InvalidParameterValue):
                await store.decrypt("1", junk)
        old = encrypt(one.der_base64, "Secret-Pa55", oaep)
        rotated = await store.rotate("1")
        assert rotated.der_base64 != one.der_base64
        await refused_or_unusable(store.decrypt("1", old))
    finally:
        await store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.rglob("keyturn.db*"))
    with store_backend.raw() as conn:
        rows = conn.execute("SELECT private_key_sealed, public_key FROM tenant_rsa_keys")
        raw += repr(rows.fetchall()).encode()
    assert b"PRIVATE KEY" not in raw
