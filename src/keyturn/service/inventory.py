"""Inventory as code: tenants, access keys, named policies, instances and managed secrets
(``[[secrets]]``, ``keyturn.service.inventory_secrets``) in a TOML file.

Parsing is pure (``tomllib``); ``${NAME}`` in any string is replaced from the environment given,
and a missing variable is an error naming the field and the variable, never a value. Policy
documents are taken literally (no ``${NAME}``): ``[[policies]]`` holds ``tenant``, ``name`` and
the document, either as ``document = '''{...}'''`` JSON text or as a TOML table mirroring
the JSON (``document = {...}``, or ``version``/``statement`` on the policy's table itself); a key
attaches ``policy = {...}`` (inline, same two forms) and/or ``policies = ["name", ...]``, and a
key with neither is its tenant's administrator. Documents are checked with
``keyturn.core.access`` here, so errors name the field. The parsed inventory is reconciled into
the store by ``keyturn.service.admin``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from keyturn.core.access import KeyPolicies, check_policy_name, validated_document
from keyturn.core.errors import InvalidParameterValue
from keyturn.core.model import Product, check_labels
from keyturn.core.secret_manager import SecretSpec
from keyturn.core.secrets import Secret
from keyturn.service.inventory_secrets import secret_spec

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class InventoryError(InvalidParameterValue):
    """The inventory file is not valid."""

    code = "InventoryError"


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantSpec:
    id: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class KeySpec:
    id: str
    tenant: str
    secret: Secret
    #: None: the key is its tenant's administrator.
    policies: KeyPolicies | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicySpec:
    tenant: str
    name: str
    #: Checked, compact JSON text.
    document: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceSpec:
    id: str
    tenant: str
    product: Product
    region: str
    name: str
    nodes: tuple[Secret, ...]  # URLs carry admin passwords
    sentinels: tuple[Secret, ...] = ()
    password_free_allowed: bool = True
    allow_admin_reset: bool = False
    #: A Redis Cluster: ``nodes`` are seeds, its shards are discovered at every task.
    cluster: bool = False
    #: Operator labels (``labels = { env = "prod" }``), checked: what fleet jobs select by.
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Inventory:
    tenants: tuple[TenantSpec, ...] = ()
    keys: tuple[KeySpec, ...] = ()
    instances: tuple[InstanceSpec, ...] = field(default_factory=tuple)
    policies: tuple[PolicySpec, ...] = ()
    #: Managed secrets (``[[secrets]]``, ``keyturn.service.inventory_secrets``).
    secrets: tuple[SecretSpec, ...] = ()


def parse_inventory(text: str, env: Mapping[str, str]) -> Inventory:
    """Parse and validate an inventory document."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError(f"inventory is not valid TOML: {exc}") from None
    reader = _Reader(env)
    tenants = tuple(
        TenantSpec(id=reader.text(t, "id", where), name=reader.text(t, "name", where, default=""))
        for where, t in reader.tables(doc, "tenants")
    )
    keys = tuple(_key(reader, where, k) for where, k in reader.tables(doc, "keys"))
    instances = tuple(_instance(reader, where, i) for where, i in reader.tables(doc, "instances"))
    policies = tuple(_policy(reader, where, p) for where, p in reader.tables(doc, "policies"))
    known = {t.id for t in tenants}
    owned: list[KeySpec | InstanceSpec] = [*keys, *instances]
    for item in owned:
        if item.tenant not in known:
            raise InventoryError(
                f"{item.id}: tenant {item.tenant!r} is not declared in [[tenants]]"
            )
    for policy in policies:
        if policy.tenant not in known:
            raise InventoryError(
                f"policy {policy.name}: tenant {policy.tenant!r} is not declared in [[tenants]]"
            )
    _unique("tenants", [t.id for t in tenants])
    _unique("keys", [k.id for k in keys])
    _unique("instances", [i.id for i in instances])
    _unique("policies", [f"{p.tenant}/{p.name}" for p in policies])
    products = {(i.tenant, i.id): i.product for i in instances}
    secrets: list[SecretSpec] = []
    for where, table in reader.tables(doc, "secrets"):
        try:
            secrets.append(secret_spec(where, table, products))
        except InvalidParameterValue as exc:
            raise InventoryError(exc.message) from None
    _unique("secrets", [f"{s.tenant_id}/{s.name}" for s in secrets])
    return Inventory(
        tenants=tenants,
        keys=keys,
        instances=instances,
        policies=policies,
        secrets=tuple(secrets),
    )


def expand_env(value: str, env: Mapping[str, str], where: str) -> str:
    """Replace ``${NAME}`` in ``value`` from ``env``; ``where`` names the field in errors."""
    return _Reader(env).expand(value, where)


def _key(reader: _Reader, where: str, table: Mapping[str, Any]) -> KeySpec:
    if "secret_env" in table:
        name = reader.text(table, "secret_env", where)
        if name not in reader.env:
            raise InventoryError(f"{where}.secret_env: environment variable {name} is not set")
        secret = reader.env[name]
    else:
        secret = reader.text(table, "secret", where)
    if len(secret) < 16:
        raise InventoryError(f"{where}: an access-key secret must be at least 16 characters")
    return KeySpec(
        id=reader.text(table, "id", where),
        tenant=reader.text(table, "tenant", where),
        secret=Secret(secret),
        policies=_key_policies(where, table),
    )


def _key_policies(where: str, table: Mapping[str, Any]) -> KeyPolicies | None:
    if "policy" not in table and "policies" not in table:
        return None
    inline = None
    if "policy" in table:
        inline = _document(table["policy"], f"{where}.policy", "")
    names = table.get("policies", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InventoryError(f"{where}.policies: must be a list of policy names")
    for n, name in enumerate(names):
        try:
            check_policy_name(name)
        except InvalidParameterValue as exc:
            raise InventoryError(f"{where}.policies[{n}]: {exc.message}") from None
    _unique(f"{where}.policies", names)
    return KeyPolicies(inline=inline, names=tuple(names))


def _policy(reader: _Reader, where: str, table: Mapping[str, Any]) -> PolicySpec:
    name = reader.text(table, "name", where)
    try:
        check_policy_name(name)
    except InvalidParameterValue as exc:
        raise InventoryError(f"{where}.name: {exc.message}") from None
    if "document" in table:
        raw, field_name = table["document"], f"{where}.document"
    else:
        # The policy's own table mirrors the JSON: version, statement (any case).
        raw = {k: v for k, v in table.items() if k not in ("tenant", "name")}
        field_name = where
    return PolicySpec(
        tenant=reader.text(table, "tenant", where),
        name=name,
        document=_document(raw, field_name, name),
    )


def _document(raw: object, where: str, name: str) -> str:
    """A document given as JSON text or as a TOML table, checked; errors name ``where``."""
    if not isinstance(raw, str | dict):
        raise InventoryError(f"{where}: must be a table or a JSON string")
    try:
        return validated_document(raw, name=name)
    except InvalidParameterValue as exc:
        raise InventoryError(f"{where}: {exc.message}") from None


def _instance(reader: _Reader, where: str, table: Mapping[str, Any]) -> InstanceSpec:
    product_name = reader.text(table, "product", where)
    try:
        product = Product(product_name)
    except ValueError:
        known = ", ".join(p.value for p in Product)
        raise InventoryError(f"{where}.product: {product_name!r} is not one of: {known}") from None
    nodes = table.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise InventoryError(f"{where}.nodes: a non-empty list of URLs is required")
    sentinels = table.get("sentinels", [])
    if not isinstance(sentinels, list):
        raise InventoryError(f"{where}.sentinels: must be a list of URLs")
    free = _flag(table, "password_free_allowed", where, default=True)
    admin_reset = _flag(table, "allow_admin_reset", where, default=False)
    cluster = _flag(table, "cluster", where, default=False)
    labels = table.get("labels", {})
    if not isinstance(labels, dict):
        raise InventoryError(f"{where}.labels: must be a table of strings")
    try:
        checked = check_labels(labels)
    except InvalidParameterValue as exc:
        raise InventoryError(f"{where}.labels: {exc.message}") from None
    return InstanceSpec(
        id=reader.text(table, "id", where),
        tenant=reader.text(table, "tenant", where),
        product=product,
        region=reader.text(table, "region", where),
        name=reader.text(table, "name", where, default=""),
        nodes=tuple(
            Secret(reader.expand(node, f"{where}.nodes[{n}]")) for n, node in enumerate(nodes)
        ),
        sentinels=tuple(
            Secret(reader.expand(url, f"{where}.sentinels[{n}]")) for n, url in enumerate(sentinels)
        ),
        password_free_allowed=free,
        allow_admin_reset=admin_reset,
        cluster=cluster,
        labels=checked,
    )


def _flag(table: Mapping[str, Any], key: str, where: str, *, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise InventoryError(f"{where}.{key}: must be true or false")
    return value


def _unique(kind: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for item in ids:
        if item in seen:
            raise InventoryError(f"{kind}: {item!r} is declared twice")
        seen.add(item)


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def tables(self, doc: Mapping[str, Any], name: str) -> list[tuple[str, Mapping[str, Any]]]:
        items = doc.get(name, [])
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise InventoryError(f"{name}: must be an array of tables ([[{name}]])")
        return [(f"{name}[{n}]", item) for n, item in enumerate(items)]

    def text(
        self, table: Mapping[str, Any], key: str, where: str, default: str | None = None
    ) -> str:
        value = table.get(key, default)
        if value is None:
            raise InventoryError(f"{where}.{key}: is required")
        if not isinstance(value, str):
            raise InventoryError(f"{where}.{key}: must be a string")
        return self.expand(value, f"{where}.{key}")

    def expand(self, value: object, where: str) -> str:
        if not isinstance(value, str):
            raise InventoryError(f"{where}: must be a string")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self.env:
                raise InventoryError(f"{where}: environment variable {name} is not set")
            return self.env[name]

        return _VAR.sub(substitute, value)
