"""The ``keyturn`` command line: ``serve`` and the inventory commands (``instances``, ``keys``,
``tenants``). Each command resolves settings, runs one coroutine and prints with rich."""

from __future__ import annotations

import typer

from keyturn.cli import inventory, serve

app = typer.Typer(
    name="keyturn",
    help="Self-hosted control plane for database credentials.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("serve")(serve.serve)
app.add_typer(inventory.instances, name="instances")
app.add_typer(inventory.keys, name="keys")
app.add_typer(inventory.tenants, name="tenants")


def main() -> None:
    app()
