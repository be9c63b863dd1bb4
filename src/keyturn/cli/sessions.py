"""``keyturn sessions INSTANCE ACCOUNT [--since TIME] [--json] [--kill]``: who still uses the old
password.

Lists the account's open sessions on every node of the instance (client address, name, when
opened, idle time, state), marking those opened before the account's last rotation through
keyturn (or ``--since``): *old*, *new*, or *?* where nothing can tell. MariaDB/MySQL record no
connection start: there the rotation's connection-id watermark tells (``old (id <= N)``), the
JSON naming what told each verdict (``old_by``) and the watermarks (``marks``). With
``--kill`` the old and possibly old ones are ended and the count is printed and recorded in the
audit log (``keyturn:EndSessions``). ``--json`` prints one JSON object instead of the table.
Exit status: 0, or 2 when the instance or the store cannot be used, or 1 when a node could not
be asked or a session could not be ended.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from keyturn.bootstrap import open_admin_store
from keyturn.cli.options import ConfigOption, DataDirOption
from keyturn.config import ConfigError, load_settings
from keyturn.core.errors import DomainError, InstanceNotFound
from keyturn.engines.registry import EngineRegistry
from keyturn.service.context import SystemClock
from keyturn.service.sessions import AccountSessions, SessionReport, SessionView
from keyturn.store.audit_keying import open_audit_log

console = Console(width=None if sys.stdout.isatty() else 200)


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter("an ISO 8601 time, e.g. 2026-12-06T10:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def sessions(
    instance: Annotated[str, typer.Argument(help="The instance id.")],
    account: Annotated[str, typer.Argument(help="The account (MySQL: user@host).")],
    since: Annotated[
        str | None,
        typer.Option(help="Compare with this time instead of the last rotation (ISO 8601)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    kill: Annotated[
        bool, typer.Option("--kill", help="End the sessions opened before the rotation.")
    ] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List (and with --kill end) an account's sessions that still use the old password."""
    moment = _since(since)

    async def go() -> SessionReport:
        settings = load_settings(config=config, data_dir=data_dir)
        store = await open_admin_store(settings)
        engines = EngineRegistry(timeout=settings.engine_timeout)
        try:
            found, _ = await store.list_instances(None, instance_ids=[instance])
            if not found:
                raise InstanceNotFound(f"instance {instance!r} is not registered")
            audit = open_audit_log(store, settings.data_dir) if kill else None
            use_case = AccountSessions(store, engines, SystemClock(), audit)
            if kill:
                return await use_case.end_old(found[0], account, since=moment, actor="cli")
            return await use_case.find(found[0], account, since=moment)
        finally:
            await engines.close()
            await store.close()

    try:
        report = asyncio.run(go())
    except (ConfigError, DomainError) as exc:
        typer.echo(f"keyturn: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(report_json(report), indent=2))
    else:
        _print(report)
    if report.unreachable or report.failures:
        raise typer.Exit(1)


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


def session_json(view: SessionView) -> dict[str, Any]:
    s = view.session
    return {
        "node": s.node,
        "id": s.id,
        "account": s.account,
        "client_addr": s.client_addr,
        "client_name": s.client_name,
        "connected_at": _when(s.connected_at) or None,
        "idle_seconds": s.idle_seconds,
        "state": s.state,
        "old": view.old,
        "old_by": view.by or None,
    }


def report_json(report: SessionReport) -> dict[str, Any]:
    return {
        "instance": report.instance_id,
        "account": report.account,
        "since": _when(report.since) or None,
        "marks": {
            node: {"server_started": mark.started, "highest_connection_id": mark.high}
            for node, mark in report.marks
        },
        "sessions": [session_json(v) for v in report.sessions],
        "old": len(report.old),
        "ended": report.ended,
        "unreachable": [{"node": n, "reason": r} for n, r in report.unreachable],
        "failures": [{"node": n, "reason": r} for n, r in report.failures],
    }


def _print(report: SessionReport) -> None:
    since = _when(report.since) or "unknown (no rotation recorded)"
    console.print(f"{report.instance_id} {report.account}: last rotation {since}")
    table = Table("node", "id", "client", "name", "connected", "idle s", "state", "old?")
    for view in report.sessions:
        s = view.session
        idle = "" if s.idle_seconds is None else f"{s.idle_seconds:.0f}"
        table.add_row(
            s.node, s.id, s.client_addr, s.client_name, _when(s.connected_at) or "?", idle,
            s.state, report.explain(view),
        )  # fmt: skip
    console.print(table)
    console.print(f"{len(report.sessions)} sessions, {len(report.old)} may use the old password")
    for node, reason in report.unreachable:
        console.print(f"[red]not asked[/red] {node}: {reason}")
    if report.ended is not None:
        console.print(f"ended {report.ended} sessions (audited)")
    for node, reason in report.failures:
        console.print(f"[red]not ended[/red] on {node}: {reason}")
