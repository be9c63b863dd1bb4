"""Actions every Tencent product serves: ``GetPublicKey``, the tenant's RSA key for encrypted
passwords (fields as KMS's GetPublicKey: ``PublicKey`` base64 DER, ``PublicKeyPem``), and the
decryption of a password parameter sent encrypted."""

from __future__ import annotations

import re

from keyturn.core.secrets import Secret
from keyturn.dialects.tencent.params import Params
from keyturn.service.context import Answer, Caller
from keyturn.service.facade import Services

#: A tenant id that is a Tencent AppId (a number that fits an int64 field).
APPID = re.compile(r"[0-9]{1,18}")


def app_id(tenant_id: str) -> int:
    """The tenant's ``AppId``; 0 when the tenant id is not one."""
    return int(tenant_id) if APPID.fullmatch(tenant_id) else 0


async def get_public_key(services: Services, caller: Caller, params: Params) -> Answer:
    key = await services.encryption.public_key(caller)
    return Answer(
        {
            "KeyId": f"keyturn-{caller.tenant_id}",
            "PublicKey": key.der_base64,
            "PublicKeyPem": key.pem,
        }
    )


async def decrypted(services: Services, caller: Caller, ciphertext: str) -> Secret:
    """The plaintext of a password the client encrypted with ``GetPublicKey``'s key."""
    return await services.encryption.decrypt(caller, ciphertext)
