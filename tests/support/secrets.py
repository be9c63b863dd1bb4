"""Managed secrets in end-to-end tests: declare a ``[[secrets]]`` on a server's inventory and
read what the server stored (flows, versions), as the CLI would read the store.

Every password read is added to ``USED_PASSWORDS`` so the session's secret scan proves none
of them reached a log or a data dir in plaintext.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from keyturn.core.secret_manager import (
    FlowState,
    FlowTrigger,
    RotationFlow,
    SecretVersion,
    VersionStage,
)
from keyturn.store.secrets import SqlSecrets
from keyturn.store.sql import SqlStore
from tests.support.keyturn_server import TENANT, KeyturnServer
from tests.support.passwords import USED_PASSWORDS
from tests.support.waiting import holds_by


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
    server's environment) and a secret of its ``account`` to the server's inventory."""
    declare_secret(
        server,
        product="tencent-redis",
        url_env="KT_SECRET_ADMIN_URL",
        instance=instance,
        name=name,
        rotation=rotation,
        overlap=overlap,
        account=account,
        fields=fields,
    )


def declare_secret(
    server: KeyturnServer,
    *,
    product: str,
    url_env: str,
    instance: str,
    name: str,
    rotation: str,
    overlap: str | None = None,
    account: str = "app",
    fields: str = "",
) -> None:
    """Add a one-node instance of ``product`` (its admin URL from ``url_env`` in the server's
    environment) and a Tencent SSM secret of its ``account`` to the server's inventory;
    ``fields``: more TOML lines of the secret (``drop_old = "when-unused"``...)."""
    extra = ("" if overlap is None else f'overlap = "{overlap}"\n') + fields
    server.config.write_text(
        server.config.read_text()
        + f"""
[[instances]]
id = "{instance}"
tenant = "{TENANT}"
product = "{product}"
region = "ap-guangzhou"
nodes = ["${{{url_env}}}"]

[[secrets]]
tenant = "{TENANT}"
name = "{name}"
vendor = "tencent-ssm"
instance = "{instance}"
account = "{account}"
rotation = "{rotation}"
{extra}"""
    )


def start_redis_secret(
    make_server: Callable[..., KeyturnServer],
    admin_url: str,
    *,
    instance: str,
    name: str,
    rotation: str,
) -> KeyturnServer:
    """A started ``keyturn serve`` whose inventory holds one Redis instance (at ``admin_url``)
    and a secret ``name`` rotated every ``rotation``; the secret scheduler ticks every 0.2 s so
    short schedules are kept to."""
    env = {"KT_SECRET_ADMIN_URL": admin_url, "KEYTURN_SECRET_TICK": "0.2"}
    server = make_server(extra_env=env)
    declare_redis_secret(server, instance=instance, name=name, rotation=rotation)
    server.start()
    return server


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
    if not holds_by(time.monotonic() + timeout, check, every=0.2):
        raise AssertionError(f"timed out waiting for {what}")


@dataclass
class AppRun:
    """What an application loop saw: logins made and failed, every password it fetched, and
    whether the old and the new password both logged in just after a rotation."""

    logins: int = 0
    failures: int = 0
    seen: set[str] = field(default_factory=set)
    overlap_checked: bool = False


def application_loop(
    server: KeyturnServer,
    name: str,
    logs_in: Callable[[str], bool],
    *,
    rotations: int,
    timeout: float,
) -> AppRun:
    """An application: fetch the secret's current password, then reconnect with it over and
    over; it refetches only when it sees a new version (as an SDK cache does), never after a
    failed login. Runs until ``rotations`` scheduled rotations after the first version (or
    ``timeout`` seconds); just after the first rotation it sees, checks that the old and the
    new password both log in (an overlap's grace period)."""
    password = staged(server, name, VersionStage.CURRENT).password.reveal()
    run = AppRun(seen={password})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if logs_in(password):
            run.logins += 1
        else:
            run.failures += 1
        fetched = staged(server, name, VersionStage.CURRENT).password.reveal()
        if fetched != password:
            old, password = password, fetched
            run.seen.add(password)
            if not run.overlap_checked:
                assert logs_in(old) and logs_in(password)
                run.overlap_checked = True
        scheduled = [f for f in succeeded(server, name) if f.trigger is FlowTrigger.SCHEDULE]
        if len(scheduled) >= rotations and len(run.seen) > rotations:
            break
        time.sleep(0.1)
    return run
