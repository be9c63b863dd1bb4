"""Managed secrets in end-to-end tests: declare a ``[[secrets]]`` on a server's inventory and
read what the server stored (flows, versions), as the CLI would read the store.

Every password read is added to ``USED_PASSWORDS`` so the session's secret scan proves none
of them reached a log or a data dir in plaintext.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from keyturn.core.secret_manager import FlowState, RotationFlow, SecretVersion, VersionStage
from keyturn.store.secrets import SqlSecrets
from keyturn.store.sql import SqlStore
from tests.support.keyturn_server import TENANT, KeyturnServer
from tests.support.passwords import USED_PASSWORDS


def declare_redis_secret(
    server: KeyturnServer,
    *,
    instance: str,
    name: str,
    rotation: str,
    overlap: str | None = None,
    account: str = "app",
    fields: str = "",
) -> None:
    """Add a Tencent Redis instance (its admin URL from ``KT_SECRET_ADMIN_URL`` in the
    server's environment) and a secret of its ``account`` to the server's inventory;
    ``fields``: more TOML lines of the secret (``drop_old = "when-unused"``...)."""
    extra = ("" if overlap is None else f'overlap = "{overlap}"\n') + fields
    server.config.write_text(
        server.config.read_text()
        + f"""
[[instances]]
id = "{instance}"
tenant = "{TENANT}"
product = "tencent-redis"
region = "ap-guangzhou"
nodes = ["${{KT_SECRET_ADMIN_URL}}"]

[[secrets]]
tenant = "{TENANT}"
name = "{name}"
vendor = "tencent-ssm"
instance = "{instance}"
account = "{account}"
rotation = "{rotation}"
{extra}"""
    )


def flows(server: KeyturnServer, name: str) -> list[RotationFlow]:
    """The secret's flows, newest first."""

    async def read(store: SqlStore) -> list[RotationFlow]:
        return await SqlSecrets(store.db).flows(TENANT, name, limit=1000)

    return server.with_store(read)


def succeeded(server: KeyturnServer, name: str) -> list[RotationFlow]:
    return [f for f in flows(server, name) if f.state is FlowState.SUCCEEDED]


def versions(server: KeyturnServer, name: str) -> list[SecretVersion]:
    async def read(store: SqlStore) -> list[SecretVersion]:
        return await SqlSecrets(store.db).versions(TENANT, name)

    found = server.with_store(read)
    USED_PASSWORDS.extend(v.password.reveal() for v in found)
    return found


def staged(server: KeyturnServer, name: str, stage: VersionStage) -> SecretVersion:
    [version] = [v for v in versions(server, name) if stage in v.stages]
    return version


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
