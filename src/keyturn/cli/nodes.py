"""``keyturn nodes``: the keyturn nodes sharing the store, how long ago each last beat, and the
unfinished tasks each holds with what is left of its lease (a task whose lease lapsed is taken
over by the next node's claimer within about a second)."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime

import typer
from rich.console import Console
from rich.table import Table

from keyturn.bootstrap import open_admin_store
from keyturn.cli.options import ConfigOption, DataDirOption
from keyturn.config import ConfigError, load_settings
from keyturn.core.cluster import HeldTask, NodeView
from keyturn.core.errors import DomainError
from keyturn.service.admin import Admin
from keyturn.service.context import SystemClock

console = Console(width=None if sys.stdout.isatty() else 200)


def nodes(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """List the nodes sharing the store, their heartbeats and the tasks each holds."""

    async def go() -> list[NodeView]:
        store = await open_admin_store(load_settings(config=config, data_dir=data_dir))
        try:
            return await Admin(store).nodes()
        finally:
            await store.close()

    try:
        views = asyncio.run(go())
    except (ConfigError, DomainError) as exc:
        typer.echo(f"keyturn: {exc}", err=True)
        raise typer.Exit(2) from None
    now = SystemClock().now()
    table = Table("node", "address", "version", "started", "last heartbeat", "tasks")
    for view in views:
        if view.node is not None:
            node = view.node
            table.add_row(
                node.id,
                node.address,
                node.version,
                node.started_at.isoformat(timespec="seconds"),
                f"{_seconds(now, node.heartbeat_at):.1f} s ago",
                str(len(view.tasks)),
            )
    console.print(table)
    held = [(view, task) for view in views for task in view.tasks]
    if not held:
        console.print("no unfinished tasks")
        return
    tasks = Table("task", "tenant", "instance", "state", "node", "lease")
    for view, task in held:
        owner = task.owner or "-"
        if view.node is None and task.owner is not None:
            owner += " (no heartbeat)"
        lease = _lease(now, task)
        tasks.add_row(str(task.id), task.tenant_id, task.instance_id, task.state, owner, lease)
    console.print(tasks)


def _seconds(now: datetime, then: datetime) -> float:
    return (now - then).total_seconds()


def _lease(now: datetime, task: HeldTask) -> str:
    if task.lease_until is None:
        return "free: the next claim takes it"
    left = -_seconds(now, task.lease_until)
    return f"{left:.1f} s left" if left >= 0 else f"lapsed {-left:.1f} s ago"
