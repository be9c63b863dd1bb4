"""``keyturn admin-tokens create|list|revoke``: bearer tokens of the admin API (``/admin/v1/``),
on the data dir's store, also while the server runs (a revoked token stops working on every
node within a second). ``create`` prints the token once, as its last line, so scripts can take
it with ``tail -n 1``; only its SHA-256 is stored."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from keyturn.cli.inventory import _run, console
from keyturn.cli.options import ConfigOption, DataDirOption
from keyturn.core.admin_tokens import AdminToken
from keyturn.core.secrets import Secret
from keyturn.service.admin_tokens import AdminTokens
from keyturn.service.context import SystemClock
from keyturn.store.admin_tokens import SqlAdminTokens
from keyturn.store.sql import SqlStore

admin_tokens = typer.Typer(help="Manage admin API tokens.", no_args_is_help=True)


def _tokens(store: SqlStore) -> AdminTokens:
    return AdminTokens(SqlAdminTokens(store.db), SystemClock())


@admin_tokens.command("create")
def create(
    tenant: Annotated[
        str | None, typer.Option(help="Only this tenant's resources; none: every tenant.")
    ] = None,
    name: Annotated[str, typer.Option(help="What the token is for.")] = "",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create an admin token; the token is printed once, as the last line."""

    async def make(store: SqlStore) -> tuple[AdminToken, Secret]:
        return await _tokens(store).create(tenant_id=tenant, name=name)

    token, secret = _run(config, data_dir, make)
    scope = f"tenant {token.tenant_id}" if token.tenant_id else "every tenant"
    typer.echo(f"admin token {token.id} ({scope}); it is shown only now:")
    typer.echo(secret.reveal())


@admin_tokens.command("list")
def list_(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """List admin tokens (never the tokens themselves)."""
    rows = _run(config, data_dir, lambda s: _tokens(s).list())
    table = Table("id", "name", "scope", "created", "last used", "state")
    for token in rows:
        table.add_row(
            token.id,
            token.name,
            token.scope,
            token.created_at.isoformat(timespec="seconds"),
            token.last_used_at.isoformat(timespec="seconds") if token.last_used_at else "-",
            "active" if token.active else "revoked",
        )
    console.print(table)


@admin_tokens.command("revoke")
def revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (at-...).")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Revoke an admin token: refused on every node within a second."""
    _run(config, data_dir, lambda s: _tokens(s).revoke(token_id))
    console.print(f"admin token {token_id} revoked", highlight=False)
