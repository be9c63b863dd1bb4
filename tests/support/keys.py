"""Access keys with policies, made in a keyturn server's data dir as the CLI makes them."""

from __future__ import annotations

import json
from typing import Any

from keyturn.core.access import KeyPolicies
from tests.support.keyturn_server import KeyturnServer
from tests.support.passwords import USED_PASSWORDS


def make_key(
    keyturn: KeyturnServer,
    tenant: str,
    *,
    inline: dict[str, Any] | None = None,
    names: tuple[str, ...] = (),
) -> tuple[str, str]:
    """A new access key of ``tenant`` with these policies attached: (id, secret)."""
    attached = KeyPolicies(inline=json.dumps(inline) if inline else None, names=names)
    key = keyturn.with_admin(lambda admin: admin.create_key(tenant, policies=attached))
    # Scanned like the passwords: a key's secret must never reach the log or the data dir.
    USED_PASSWORDS.append(key.secret.reveal())
    return key.id, key.secret.reveal()
