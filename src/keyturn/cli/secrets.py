"""``keyturn secrets``: managed secrets (issue 16) on the store: ``list``, ``show``,
``rotate-now``, ``pause``, ``resume`` and ``history``.

These commands act on the store only and never print a password. ``rotate-now`` makes the
secret due at once; a running node's scheduler rotates it within a tick (the CLI runs no
engines), and ``history`` then shows the flow. Exit status 2 on a refused command (unknown
secret, bad setting), with the reason on stderr.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from keyturn.bootstrap import open_admin_store
from keyturn.cli.options import ConfigOption, DataDirOption
from keyturn.config import ConfigError, load_settings
from keyturn.core.errors import DomainError
from keyturn.core.secret_manager import RotationStatus, SecretRecord
from keyturn.core.store_ports import Page
from keyturn.service.context import SystemClock
from keyturn.service.secrets import SecretManager
from keyturn.store.secrets import SqlSecrets

T = TypeVar("T")
console = Console(width=None if sys.stdout.isatty() else 200)
secrets = typer.Typer(help="Managed secrets and their rotation schedules.", no_args_is_help=True)

TenantArg = Annotated[str, typer.Argument(help="Tenant id (uin / account id).")]
NameArg = Annotated[str, typer.Argument(help="The secret's name (SecretName).")]


def _run(
    config: ConfigOption, data_dir: DataDirOption, use: Callable[[SecretManager], Awaitable[T]]
) -> T:
    async def go() -> T:
        store = await open_admin_store(load_settings(config=config, data_dir=data_dir))
        try:
            return await use(SecretManager(SqlSecrets(store.db), None, SystemClock()))
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except (ConfigError, DomainError) as exc:
        typer.echo(f"keyturn: {exc}", err=True)
        raise typer.Exit(2) from None


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.isoformat(timespec="seconds")


def _period(value: timedelta | None) -> str:
    if value is None:
        return "-"
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@secrets.command("list")
def secrets_list(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's.")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List managed secrets with their schedules (no values)."""

    async def read(manager: SecretManager) -> list[SecretRecord]:
        found, _ = await manager.list_secrets(tenant, page=Page(limit=10_000))
        return found

    table = Table("tenant", "name", "vendor", "instance", "account", "rotation", "next", "last")
    for record in _run(config, data_dir, read):
        spec = record.spec
        rotation = _period(spec.rotation) if record.rotation_enabled else "paused"
        if spec.rotation is None:
            rotation = "-"
        table.add_row(
            spec.tenant_id,
            spec.name,
            spec.vendor.value,
            spec.instance_id,
            spec.account,
            rotation,
            _when(record.next_rotation_at),
            _when(record.last_rotation_at),
        )
    console.print(table)


@secrets.command("show")
def secrets_show(
    tenant: TenantArg, name: NameArg, config: ConfigOption = None, data_dir: DataDirOption = None
) -> None:
    """Show one secret: its schedule and versions (ids and stages, never values)."""

    async def read(manager: SecretManager) -> tuple[SecretRecord, RotationStatus, list[str]]:
        record = await manager.describe_secret(tenant, name)
        status = await manager.describe_rotation(tenant, name)
        versions = [
            f"{v.version_id} {'/'.join(v.stages)} {v.account} {_when(v.created_at)}"
            for v in await manager.list_versions(tenant, name)
        ]
        return record, status, versions

    record, status, versions = _run(config, data_dir, read)
    spec = record.spec
    table = Table("field", "value")
    rows = [
        ("name", spec.name),
        ("tenant", spec.tenant_id),
        ("vendor", spec.vendor.value),
        ("instance", spec.instance_id),
        ("account", spec.account),
        ("sub type", spec.sub_type.value),
        ("source", spec.source),
        ("rotation", "on" if status.enabled else "off"),
        ("period", _period(status.period)),
        ("begin", "-" if status.begin is None else status.begin.isoformat()),
        ("window", _period(status.window)),
        ("overlap", _period(status.overlap)),
        ("drop old", spec.drop_old.value if spec.overlap is not None else "-"),
        ("end old sessions", "yes" if spec.end_old_sessions else "no"),
        ("next rotation", _when(status.next_rotation_at)),
        ("last rotation", _when(status.last_rotation_at)),
        ("failed tries", str(record.failures)),
        ("running flow", status.running_flow or "-"),
        ("current version", record.current_version or "-"),
    ]
    for field, value in rows:
        table.add_row(field, value)
    console.print(table)
    for line in versions:
        console.print(f"version {line}")


@secrets.command("rotate-now")
def secrets_rotate_now(
    tenant: TenantArg, name: NameArg, config: ConfigOption = None, data_dir: DataDirOption = None
) -> None:
    """Make the secret due now: a running node rotates it within a tick."""
    due = _run(config, data_dir, lambda m: m.request_rotation(tenant, name))
    console.print(f"rotation of {name} due at {_when(due)}; see `keyturn secrets history`")


@secrets.command("pause")
def secrets_pause(
    tenant: TenantArg, name: NameArg, config: ConfigOption = None, data_dir: DataDirOption = None
) -> None:
    """Stop scheduled rotations of the secret (its period is kept)."""
    _run(config, data_dir, lambda m: m.pause(tenant, name))
    console.print(f"rotation of {name} paused")


@secrets.command("resume")
def secrets_resume(
    tenant: TenantArg, name: NameArg, config: ConfigOption = None, data_dir: DataDirOption = None
) -> None:
    """Schedule rotations again, from the next slot."""
    status = _run(config, data_dir, lambda m: m.resume(tenant, name))
    console.print(f"rotation of {name} resumed; next at {_when(status.next_rotation_at)}")


@secrets.command("history")
def secrets_history(
    tenant: TenantArg,
    name: NameArg,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 50,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """The secret's rotations, newest first."""
    flows = _run(config, data_dir, lambda m: m.rotation_history(tenant, name, limit=limit))
    table = Table(
        "flow", "trigger", "state", "try", "version", "task", "started", "ended", "message"
    )
    for flow in flows:
        table.add_row(
            flow.flow_id,
            flow.trigger.value,
            flow.state.value,
            str(flow.attempt),
            flow.version_id,
            "-" if flow.task_id is None else str(flow.task_id),
            _when(flow.created_at),
            _when(flow.finished_at),
            flow.message,
        )
    console.print(table)
