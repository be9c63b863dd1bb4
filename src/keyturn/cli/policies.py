"""``keyturn policies``: named policy documents, what each access key attaches, and ``check``,
which explains the decision the API would make for a key, an action and a resource.

Documents are JSON files in any vendor's shape (CAM ``version``/``statement``, RAM and IAM
``Version``/``Statement``). Changes apply to running servers within a second (their key cache).
Keys declared in the inventory file get their policies from the file at the next start.
``check`` exits 0 when allowed and 1 when denied, so scripts can use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from keyturn.cli.inventory import _run, console
from keyturn.cli.options import ConfigOption, DataDirOption
from keyturn.core.access import Decision, KeyPolicies, NamedPolicy
from keyturn.core.model import AccessKey
from keyturn.service.admin import Admin
from keyturn.store.sql import SqlStore

policies = typer.Typer(help="Manage authorization policies of access keys.", no_args_is_help=True)

FileOption = Annotated[Path, typer.Option("--file", help="Policy document (JSON); - for stdin.")]
TenantOption = Annotated[str, typer.Option("--tenant", help="Tenant owning the policy.")]
NameOption = Annotated[str, typer.Option("--name", help="Policy name.")]
KeyArgument = Annotated[str, typer.Argument(help="Access key id.")]
NameArgument = Annotated[str, typer.Argument(help="Name of a policy of the key's tenant.")]


def _document(path: Path) -> str:
    try:
        return typer.get_text_stream("stdin").read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        typer.echo(f"keyturn: cannot read {path}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    except UnicodeDecodeError:
        typer.echo(f"keyturn: {path} is not UTF-8 text", err=True)
        raise typer.Exit(2) from None


def _describe(attached: KeyPolicies | None) -> str:
    if attached is None:
        return "administrator (no policy)"
    parts = (["inline"] if attached.inline is not None else []) + list(attached.names)
    return ", ".join(parts) if parts else "nothing (the key may do nothing)"


@policies.command("put")
def policies_put(
    tenant: TenantOption,
    name: NameOption,
    file: FileOption,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create or replace a named policy."""
    text = _document(file)
    _run(config, data_dir, lambda s: Admin(s).put_policy(tenant, name, text))
    console.print(f"policy {name} of tenant {tenant} saved", highlight=False)


@policies.command("list")
def policies_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's policies.")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List named policies with the keys attaching them."""

    async def read(store: SqlStore) -> list[tuple[NamedPolicy, list[str]]]:
        found = await store.list_policies(tenant)
        users: dict[tuple[str, str], list[str]] = {}
        for key in await store.list_access_keys(tenant):
            attached = await store.key_policies(key.id)
            for name in attached.names if attached else ():
                users.setdefault((key.tenant_id, name), []).append(key.id)
        return [(p, users.get((p.tenant_id, p.name), [])) for p in found]

    table = Table("tenant", "name", "source", "keys", "document")
    for policy, keys in _run(config, data_dir, read):
        table.add_row(
            policy.tenant_id, policy.name, str(policy.source), "\n".join(keys), policy.document
        )
    console.print(table)


@policies.command("remove")
def policies_remove(
    tenant: TenantOption,
    name: NameOption,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Remove a named policy (refused while a key attaches it)."""
    _run(config, data_dir, lambda s: Admin(s).remove_policy(tenant, name))
    console.print(f"policy {name} of tenant {tenant} removed", highlight=False)


@policies.command("show")
def policies_show(
    key_id: KeyArgument, config: ConfigOption = None, data_dir: DataDirOption = None
) -> None:
    """Show what a key attaches, and its inline document."""

    async def read(store: SqlStore) -> tuple[AccessKey | None, KeyPolicies | None]:
        return await store.get_access_key(key_id), await store.key_policies(key_id)

    key, attached = _run(config, data_dir, read)
    tenant = key.tenant_id if key else "?"
    console.print(f"key {key_id} (tenant {tenant}): {_describe(attached)}", highlight=False)
    if attached is not None and attached.inline is not None:
        console.print(f"inline: {attached.inline}", highlight=False)


@policies.command("attach")
def policies_attach(
    key_id: KeyArgument,
    name: NameArgument,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Attach a named policy to a key (an administrator key is then limited to its policies)."""
    attached = _run(config, data_dir, lambda s: Admin(s).attach_policy(key_id, name))
    console.print(f"key {key_id}: {_describe(attached)}", highlight=False)


@policies.command("detach")
def policies_detach(
    key_id: KeyArgument,
    name: NameArgument,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Detach a named policy from a key (`clear` makes a key an administrator again)."""
    attached = _run(config, data_dir, lambda s: Admin(s).detach_policy(key_id, name))
    console.print(f"key {key_id}: {_describe(attached)}", highlight=False)


@policies.command("set-inline")
def policies_set_inline(
    key_id: KeyArgument,
    file: FileOption,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Set a key's inline policy document (its named policies stay)."""
    text = _document(file)
    _run(config, data_dir, lambda s: Admin(s).set_inline_policy(key_id, text))
    console.print(f"key {key_id}: inline policy set", highlight=False)


@policies.command("clear")
def policies_clear(
    key_id: KeyArgument, config: ConfigOption = None, data_dir: DataDirOption = None
) -> None:
    """Detach every policy: the key becomes its tenant's administrator."""
    _run(config, data_dir, lambda s: Admin(s).clear_policies(key_id))
    console.print(f"key {key_id}: {_describe(None)}", highlight=False)


@policies.command("check")
def policies_check(
    key_id: KeyArgument,
    action: Annotated[str, typer.Argument(help="Vendor action, e.g. redis:ResetPassword.")],
    resource: Annotated[
        str,
        typer.Argument(help="Resource name, e.g. qcs::redis:ap-guangzhou:uin/1300000001:..."),
    ],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Explain whether the key may do ACTION on RESOURCE (exit 0: allowed, 1: denied)."""

    async def go(store: SqlStore) -> tuple[Decision, AccessKey | None]:
        decision = await Admin(store).explain(key_id, action, resource)
        return decision, await store.get_access_key(key_id)

    decision, key = _run(config, data_dir, go)
    verdict = "allowed" if decision.allowed else "denied"
    console.print(f"{verdict}: {decision.reason}", highlight=False, soft_wrap=True)
    if key is not None and key.tenant_id not in resource:
        # The API names resources with the caller's own tenant: another tenant's instances are
        # simply not found, whatever a policy says.
        console.print(
            f"note: requests of this key only reach resources of tenant {key.tenant_id}",
            highlight=False,
            soft_wrap=True,
        )
    if not decision.allowed:
        raise typer.Exit(1)
