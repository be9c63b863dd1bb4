"""The ``keyturn`` command line: ``serve``, ``sandbox``, ``migrate``, the inventory commands
(``instances``, ``keys``, ``tenants``, ``policies``), ``nodes``, ``sessions``,
``admin-tokens``, ``secrets`` and ``rotate`` (fleet jobs); ``keyturn --version``. Each
command resolves settings, runs one coroutine and prints with rich."""

from __future__ import annotations

from typing import Annotated

import typer

from keyturn import __version__
from keyturn.cli import (
    admin_tokens,
    audit,
    inventory,
    keyrotation,
    migrate,
    nodes,
    policies,
    rotate,
    sandbox,
    secrets,
    serve,
    sessions,
    tls,
)

app = typer.Typer(
    name="keyturn",
    help="Self-hosted control plane for database credentials.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"keyturn {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    pass


app.command("serve")(serve.serve)
app.command("sandbox")(sandbox.sandbox)
app.command("migrate")(migrate.migrate)
app.add_typer(inventory.instances, name="instances")
app.add_typer(inventory.keys, name="keys")
inventory.keys.command("rotate")(keyrotation.rotate_key)
inventory.keys.command("rotate-master")(keyrotation.rotate_master)
app.add_typer(tls.tls, name="tls")
app.add_typer(inventory.tenants, name="tenants")
app.add_typer(policies.policies, name="policies")
app.add_typer(audit.audit, name="audit")
app.command("nodes")(nodes.nodes)
app.command("sessions")(sessions.sessions)
app.add_typer(admin_tokens.admin_tokens, name="admin-tokens")
app.add_typer(secrets.secrets, name="secrets")
app.add_typer(rotate.rotate, name="rotate")


def main() -> None:
    app()
