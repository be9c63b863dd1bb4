"""``keyturn audit verify|tail|search``: read and check the tamper-evident audit log of a data dir,
also while the server runs (reads never block its writes: SQLite WAL).

``verify`` walks the keyed hash chain from the first record and exits 1 naming the first record
that was edited, removed, moved or re-hashed without the key; it needs the master key the
server uses (``KEYTURN_MASTER_KEY`` or the data dir's ``master.key``). ``tail`` and ``search``
print records as a table or, with ``--json``, one JSON object per record (the stored event plus
its seq, hashes and scheme). Clients choose much of what a record holds (key ids, user agents,
instance ids in resources), so table cells are plain text, never rich markup, and control and
invisible formatting characters are shown as escapes (``\x1b``), so a record cannot restyle,
hide or rewrite the terminal; JSON output is ASCII. There is no password in any record.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from keyturn.bootstrap import open_admin_store
from keyturn.cli.options import ConfigOption, DataDirOption
from keyturn.config import ConfigError, load_settings
from keyturn.core.audit import AuditOutcome
from keyturn.core.errors import DomainError
from keyturn.store.audit import AuditRecord, SqlAuditLog
from keyturn.store.audit_chain import canonical_json
from keyturn.store.audit_keying import open_audit_log
from keyturn.store.sealing import KEY_FILE

audit = typer.Typer(help="Read and verify the tamper-evident audit log.", no_args_is_help=True)
# Piped output is never folded: a table is as wide as its longest resource name needs.
console = Console(width=None if sys.stdout.isatty() else 1000)
T = TypeVar("T")
_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]
TenantOption = Annotated[
    str | None, typer.Option(help='Only this tenant\'s records ("" = unauthenticated).')
]


def _run(
    config: ConfigOption, data_dir: DataDirOption, action: Callable[[SqlAuditLog], Awaitable[T]]
) -> T:
    async def go() -> T:
        settings = load_settings(config=config, data_dir=data_dir)
        if not (settings.master_key or "").strip() and not (settings.data_dir / KEY_FILE).exists():
            # A new master key made here would verify nothing.
            raise ConfigError(
                f"no master key: the audit chain is keyed by the server's master key; set"
                f" KEYTURN_MASTER_KEY or use the server's data dir ({settings.data_dir} has"
                f" no {KEY_FILE})"
            )
        store = await open_admin_store(settings)
        try:
            return await action(open_audit_log(store, settings.data_dir))
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except (ConfigError, DomainError, ValueError) as exc:
        typer.echo(f"keyturn: {exc}", err=True)
        raise typer.Exit(2) from None


def _inert(value: str) -> Text:
    """``value`` as plain text (never markup), with control and invisible formatting
    characters (ANSI escapes, bidi overrides, zero-width) shown as Python escapes."""
    shown = "".join(
        char.encode("unicode_escape").decode("ascii")
        if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp")
        else char
        for char in value
    )
    return Text(shown)


def _moment(value: str | None) -> datetime | None:
    """``2025-01-02T03:04:05Z`` (naive = UTC), or ``30s``/``15m``/``2h``/``7d`` ago."""
    if value is None:
        return None
    relative = _RELATIVE.match(value.strip())
    if relative:
        ago = timedelta(**{_UNITS[relative[2]]: int(relative[1])})
        return datetime.now(UTC) - ago
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither ISO-8601 nor like 15m, 2h, 7d") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _print(records: Sequence[AuditRecord], as_json: bool) -> None:
    if as_json:
        for record in records:
            data: dict[str, Any] = json.loads(canonical_json(record.event))
            data.update(
                seq=record.seq, prev_hash=record.prev_hash, hash=record.hash, scheme=record.scheme
            )
            typer.echo(json.dumps(data, sort_keys=True, ensure_ascii=True))
        return
    table = Table(
        "seq", "at (UTC)", "tenant", "key", "source", "action", "neutral", "resource",
        "outcome", "code", "request id", "task",
    )  # fmt: skip
    for column in table.columns:
        column.overflow = "fold"
    for record in records:
        e = record.event
        cells = (
            str(record.seq),
            e.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            e.tenant_id or "-",
            e.key_id or "-",
            e.source_ip,
            e.action,
            e.neutral_action,
            e.resource,
            str(e.outcome),
            e.error_code,
            e.request_id,
            e.task_id,
        )
        table.add_row(*(_inert(cell) for cell in cells))
    console.print(table)


@audit.command("verify")
def verify(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Check the whole keyed chain; exit 1 naming the first record edited, removed, moved or
    re-hashed without the key."""
    check = _run(config, data_dir, lambda log: log.verify())
    if check.intact:
        unkeyed = (
            f"; {check.legacy} of them unkeyed (written before the chain was keyed: the"
            " server keys them on its next start)"
            if check.legacy
            else ""
        )
        typer.echo(f"chain intact, {check.records} records (head {check.head_hash}){unkeyed}")
        return
    typer.echo(
        f"chain broken at record {check.bad_seq}: {check.problem} "
        f"({check.records} records before it are intact)"
    )
    raise typer.Exit(1)


@audit.command("tail")
def tail(
    lines: Annotated[int, typer.Option("-n", "--lines", min=1, help="How many records.")] = 20,
    tenant: TenantOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Print the newest records, oldest first."""
    _print(_run(config, data_dir, lambda log: log.tail(lines, tenant)), as_json)


@audit.command("search")
def search(
    tenant: TenantOption = None,
    action: Annotated[
        str | None,
        typer.Option(help="Vendor action (redis:ResetPassword or ResetPassword) or neutral one."),
    ] = None,
    outcome: Annotated[AuditOutcome | None, typer.Option(help="Outcome.")] = None,
    request_id: Annotated[str | None, typer.Option(help="The API's request id.")] = None,
    since: Annotated[
        str | None, typer.Option(help="From this time: ISO-8601 (UTC unless given), or 15m, 2h.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Before this time (as --since).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many (the newest).")] = 100,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Print the records matching every filter given, oldest first."""
    start, end = _moment(since), _moment(until)
    found = _run(
        config,
        data_dir,
        lambda log: log.search(
            tenant=tenant,
            action=action,
            outcome=outcome,
            request_id=request_id,
            since=start,
            until=end,
            limit=limit,
        ),
    )
    _print(found, as_json)
