"""The ``keyturn`` command line: ``serve``, ``migrate``, the inventory commands (``instances``,
``keys``, ``tenants``, ``policies``), ``nodes`` and ``admin-tokens``. Each command resolves
settings, runs one coroutine and prints with rich."""

from __future__ import annotations

import typer

from keyturn.cli import (
    admin_tokens,
    audit,
    inventory,
    keyrotation,
    migrate,
    nodes,
    policies,
    serve,
    tls,
)

app = typer.Typer(
    name="keyturn",
    help="Self-hosted control plane for database credentials.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("serve")(serve.serve)
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
app.add_typer(admin_tokens.admin_tokens, name="admin-tokens")


def main() -> None:
    app()
