"""``keyturn instances|keys|tenants``: manage the inventory in a data dir, also while the server
runs (they share the store). Node URLs may use ``${NAME}`` so passwords stay out of ``ps``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from keyturn.bootstrap import open_admin_store
from keyturn.cli.options import ConfigOption, DataDirOption
from keyturn.config import ConfigError, load_settings
from keyturn.core.access import KeyPolicies
from keyturn.core.errors import DomainError
from keyturn.core.fleet import parse_labels
from keyturn.core.model import Instance, Product, Tenant
from keyturn.core.secrets import Secret
from keyturn.service.admin import Admin
from keyturn.service.context import Caller
from keyturn.service.encryption import Encryption
from keyturn.service.inventory import expand_env
from keyturn.store.sql import SqlStore

instances = typer.Typer(help="Manage database instances.", no_args_is_help=True)
keys = typer.Typer(help="Manage API access keys.", no_args_is_help=True)
tenants = typer.Typer(help="Manage tenants (vendor accounts).", no_args_is_help=True)
# Piped output gets a wide console so ids and URLs are never cut.
console = Console(width=None if sys.stdout.isatty() else 200)
T = TypeVar("T")


def _run(
    config: ConfigOption, data_dir: DataDirOption, action: Callable[[SqlStore], Awaitable[T]]
) -> T:
    async def go() -> T:
        store = await open_admin_store(load_settings(config=config, data_dir=data_dir))
        try:
            return await action(store)
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except (ConfigError, DomainError) as exc:
        typer.echo(f"keyturn: {exc}", err=True)
        raise typer.Exit(2) from None


@tenants.command("add")
def tenants_add(
    tenant_id: Annotated[str, typer.Argument(help="Account id (uin / account id / project id).")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Add a tenant."""
    _run(config, data_dir, lambda s: Admin(s).ensure_tenant(Tenant(id=tenant_id, name=name)))
    console.print(f"tenant {tenant_id} added")


@tenants.command("list")
def tenants_list(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """List tenants."""
    rows = _run(config, data_dir, lambda s: s.list_tenants())
    table = Table("id", "name")
    for tenant in rows:
        table.add_row(tenant.id, tenant.name)
    console.print(table)


@keys.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant the key acts for.")],
    policy: Annotated[
        list[str] | None,
        typer.Option(help="Attach this named policy (repeatable); none: an administrator key."),
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create an access key; its secret is printed once."""
    attached = KeyPolicies(names=tuple(dict.fromkeys(policy))) if policy else None
    key = _run(config, data_dir, lambda s: Admin(s).create_key(tenant, policies=attached))
    console.print(f"SecretId  {key.id}\nSecretKey {key.secret.reveal()}", highlight=False)


@keys.command("public-key")
def keys_public_key(
    tenant: Annotated[str, typer.Option(help="Tenant whose RSA public key to print.")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Print the tenant's RSA-2048 public key (PEM) for encrypted passwords; made on first use."""
    key = _run(config, data_dir, lambda s: Encryption(s).public_key(_caller(tenant)))
    typer.echo(key.pem, nl=False)


@keys.command("rotate-rsa")
def keys_rotate_rsa(
    tenant: Annotated[str, typer.Option(help="Tenant whose RSA key pair to replace.")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Replace the tenant's RSA key pair; ciphertexts made with the old key stop working."""
    key = _run(config, data_dir, lambda s: Encryption(s).rotate(tenant))
    typer.echo(key.pem, nl=False)


def _caller(tenant: str) -> Caller:
    return Caller(tenant_id=tenant, key_id="cli", request_id="cli")


@keys.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List access keys (never their secrets)."""
    rows = _run(config, data_dir, lambda s: s.list_access_keys(tenant))
    table = Table("id", "tenant", "enabled", "source")
    for key in rows:
        table.add_row(key.id, key.tenant_id, str(key.enabled).lower(), str(key.source))
    console.print(table)


@keys.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The access key id.")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Disable an access key at once."""
    _run(config, data_dir, lambda s: Admin(s).revoke_key(key_id))
    console.print(f"access key {key_id} revoked")


@instances.command("add")
def instances_add(
    instance_id: Annotated[str, typer.Option("--id", help="Vendor-format id, e.g. crs-5a4py64p.")],
    tenant: Annotated[str, typer.Option(help="Owning tenant.")],
    product: Annotated[Product, typer.Option(help="Vendor product.")],
    region: Annotated[str, typer.Option(help="Region, e.g. ap-guangzhou.")],
    node: Annotated[
        list[str],
        typer.Option(
            help="Admin URL per node, in any order (the primary is discovered); with --cluster, "
            "seed nodes of the cluster. ${VAR} is expanded."
        ),
    ],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    sentinel: Annotated[
        list[str] | None,
        typer.Option(help="Redis Sentinel URL naming the master, redis://:pw@host:26379/mymaster."),
    ] = None,
    password_free_allowed: Annotated[
        bool, typer.Option(help="Allow switching to password-free mode.")
    ] = True,
    allow_admin_reset: Annotated[
        bool,
        typer.Option(
            help="Let the vendor APIs reset the accounts keyturn logs in with, and superusers "
            "(refused by default: a key allowed to reset passwords must not take over the server)."
        ),
    ] = False,
    cluster: Annotated[
        bool,
        typer.Option(
            "--cluster",
            help="A Redis Cluster: the nodes are seeds, and every node of every shard is "
            "discovered with CLUSTER NODES at each task.",
        ),
    ] = False,
    label: Annotated[
        list[str] | None,
        typer.Option(help="A label, KEY=VALUE (env=prod); repeatable. Fleet jobs select by them."),
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Register (or replace) an instance."""
    try:
        labels = dict(parse_labels(label or []))
        urls = [Secret(expand_env(url, os.environ, f"--node {n}")) for n, url in enumerate(node)]
        sentinels = [
            Secret(expand_env(url, os.environ, f"--sentinel {n}"))
            for n, url in enumerate(sentinel or [])
        ]
    except DomainError as exc:
        typer.echo(f"keyturn: {exc}", err=True)
        raise typer.Exit(2) from None
    _run(
        config,
        data_dir,
        lambda s: Admin(s).add_instance(
            tenant_id=tenant,
            instance_id=instance_id,
            product=product,
            region=region,
            node_urls=urls,
            name=name,
            password_free_allowed=password_free_allowed,
            sentinel_urls=sentinels,
            allow_admin_reset=allow_admin_reset,
            cluster=cluster,
            labels=labels,
        ),
    )
    console.print(f"instance {instance_id} added")


@instances.command("list")
def instances_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's instances.")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List instances with their nodes (passwords hidden)."""
    rows, _ = _run(config, data_dir, lambda s: s.list_instances(tenant))
    table = Table(
        "id",
        "tenant",
        "product",
        "region",
        "name",
        "topology",
        "nodes",
        "admin reset",
        "labels",
        "source",
    )
    for inst in rows:
        nodes = "\n".join(node.address.public_url() for node in (*inst.nodes, *inst.sentinels))
        table.add_row(
            inst.id,
            inst.tenant_id,
            str(inst.product),
            inst.region,
            inst.name,
            _topology(inst),
            nodes,
            "allowed" if inst.allow_admin_reset else "refused",
            ",".join(f"{k}={v}" for k, v in inst.labels),
            str(inst.source),
        )
    console.print(table)


def _topology(instance: Instance) -> str:
    """How the instance's nodes are found: a cluster's from its seeds (``CLUSTER NODES``), from
    its sentinels, or the declared ones (roles by ``ROLE``)."""
    if instance.cluster:
        return "cluster"
    if instance.sentinels:
        return "sentinel"
    return "declared"


@instances.command("remove")
def instances_remove(
    instance_id: Annotated[str, typer.Argument(help="The instance id.")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Remove an instance from keyturn (the database itself is untouched)."""
    _run(config, data_dir, lambda s: Admin(s).remove_instance(instance_id))
    console.print(f"instance {instance_id} removed")
