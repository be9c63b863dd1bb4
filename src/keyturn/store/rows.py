"""Row mapping for ``SqlStore``: domain values to column values and back, and seal contexts.

Everything here is pure (no I/O): JSON for task steps and credential snapshots, the stored form
of a node's URL (no password), the ``SecretBox`` context of every sealed column, and the
assembly of ``Instance`` and ``Task`` values from result rows, unsealing secrets into
``Secret``s. A value the store itself wrote but cannot read back is an ``InternalError``.
Imports: ``keyturn.core`` and the standard library.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from keyturn.core.engine_ports import CredentialSnapshot
from keyturn.core.errors import DomainError, InternalError
from keyturn.core.model import (
    AccessKey,
    Instance,
    KeySource,
    Node,
    NodeAddress,
    NodeRole,
    Product,
    parse_node_url,
)
from keyturn.core.secrets import Secret
from keyturn.core.tasks import StepPhase, Task, TaskKind, TaskState, TaskStep

#: Opens a sealed column value given its context.
Unseal = Callable[[str, str], str]

# --------------------------------------------------------------------------- seal contexts


def key_secret_context(key_id: str) -> str:
    return f"access_key:{key_id}:secret"


def node_password_context(instance_id: str, ordinal: int) -> str:
    return f"node:{instance_id}:{ordinal}:password"


def node_pending_context(instance_id: str, ordinal: int) -> str:
    return f"node:{instance_id}:{ordinal}:pending_password"


def task_pending_context(task_id: int) -> str:
    return f"task:{task_id}:pending"


def task_snapshots_context(task_id: int) -> str:
    return f"task:{task_id}:snapshots"


def fleet_password_context(job_id: str, seq: int) -> str:
    return f"fleet:{job_id}:{seq}:password"


# --------------------------------------------------------------------------- JSON columns


def steps_to_json(steps: Sequence[TaskStep]) -> str:
    return json.dumps(
        [
            {"ordinal": s.ordinal, "endpoint": s.endpoint, "phase": s.phase.value, "note": s.note}
            for s in steps
        ],
        separators=(",", ":"),
    )


def steps_from_json(text: str) -> tuple[TaskStep, ...]:
    try:
        return tuple(
            TaskStep(
                ordinal=int(item["ordinal"]),
                endpoint=str(item["endpoint"]),
                phase=StepPhase(item["phase"]),
                note=str(item.get("note", "")),
            )
            for item in json.loads(text)
        )
    except (ValueError, TypeError, KeyError):
        raise InternalError("a stored task has unreadable steps") from None


def marks_to_json(marks: Mapping[str, str] | None) -> str | None:
    return None if not marks else json.dumps(dict(sorted(marks.items())), separators=(",", ":"))


def marks_from_json(text: str | None) -> tuple[tuple[str, str], ...]:
    """A task's session marks; unreadable ones are none (they only sharpen a verdict)."""
    if not text:
        return ()
    try:
        loaded = json.loads(text)
    except ValueError:
        return ()
    if not isinstance(loaded, dict):
        return ()
    return tuple((str(k), str(v)) for k, v in loaded.items())


def snapshots_to_json(snapshots: Mapping[str, CredentialSnapshot]) -> str:
    try:
        return json.dumps(
            {
                key: {"account": snap.account, "data": dict(snap.data)}
                for key, snap in snapshots.items()
            },
            separators=(",", ":"),
            sort_keys=True,
        )
    except (TypeError, ValueError):
        raise InternalError("a credential snapshot is not JSON-serializable") from None


def snapshots_from_json(text: str) -> dict[str, CredentialSnapshot]:
    """Snapshots by node endpoint (tasks written before endpoints keyed them use a declared
    node's ordinal; the worker maps those)."""
    try:
        raw = json.loads(text)
        return {
            str(key): CredentialSnapshot(account=str(item["account"]), data=item["data"])
            for key, item in raw.items()
        }
    except (ValueError, TypeError, KeyError, AttributeError):
        raise InternalError("a stored task has unreadable credential snapshots") from None


# --------------------------------------------------------------------------- nodes


def stored_url(address: NodeAddress) -> str:
    """``NodeAddress.public_url()`` (no password) with the username quoted and the options
    kept, so that ``parse_node_url`` gives the same address back."""
    host = f"[{address.host}]" if ":" in address.host else address.host
    path = f"/{address.database}" if address.database else ""
    query = f"?{urlencode(sorted(address.options.items()))}" if address.options else ""
    user = quote(address.username, safe="")
    return f"{address.scheme}://{user}@{host}:{address.port}{path}{query}"


def node_values(node: Node, seal: Callable[[str, str], str]) -> dict[str, Any]:
    """A ``nodes`` row; a None pending password is written as NULL."""
    iid, ordinal, password = node.instance_id, node.ordinal, node.address.password
    pending = node.pending_password
    return {
        "instance_id": iid,
        "ordinal": ordinal,
        "public_url": stored_url(node.address),
        "username": node.address.username,
        "password_sealed": (
            None
            if password is None
            else seal(password.reveal(), node_password_context(iid, ordinal))
        ),
        "pending_password_sealed": (
            None if pending is None else seal(pending.reveal(), node_pending_context(iid, ordinal))
        ),
        "role": str(NodeRole.SENTINEL if node.role is NodeRole.SENTINEL else NodeRole.MEMBER),
    }


_PRODUCTS: Mapping[str, Product] = {p.value: p for p in Product}
_SOURCES: Mapping[str, KeySource] = {s.value: s for s in KeySource}


#: Parsed public node URLs (no password in them): parsing costs ~20-50 us a node, and listing
#: pages and resets read the same few instances over and over. Bounded; entries are immutable
#: but for ``options``, which each node gets a copy of.
_parse_public_url = functools.lru_cache(maxsize=2048)(parse_node_url)


def _node(product: Product, row: Any, unseal: Unseal) -> Node:
    iid, ordinal = row.id, int(row.n_ordinal)
    try:
        parsed = _parse_public_url(row.n_public_url, product.engine)
    except DomainError:
        raise InternalError(f"instance {iid} node {ordinal} has an unreadable URL") from None
    sealed, sealed_pending = row.n_password_sealed, row.n_pending_password_sealed
    password = (
        None if sealed is None else Secret(unseal(sealed, node_password_context(iid, ordinal)))
    )
    pending = (
        None
        if sealed_pending is None
        else Secret(unseal(sealed_pending, node_pending_context(iid, ordinal)))
    )
    address = NodeAddress(
        engine=parsed.engine,
        scheme=parsed.scheme,
        host=parsed.host,
        port=parsed.port,
        username=row.n_username,
        password=password,
        database=parsed.database,
        options=dict(parsed.options),
    )
    role = NodeRole.SENTINEL if row.n_role == NodeRole.SENTINEL.value else NodeRole.MEMBER
    return Node(
        instance_id=iid, ordinal=ordinal, address=address, pending_password=pending, role=role
    )


def instances_from_rows(rows: Iterable[Any], unseal: Unseal) -> list[Instance]:
    """Assemble instances from ``instances LEFT JOIN nodes`` rows ordered by (id, ordinal);
    node columns are labelled ``n_<column>``."""
    out: list[Instance] = []
    head: Any = None
    product = Product.TENCENT_REDIS
    nodes: list[Node] = []
    for row in rows:
        if head is None or row.id != head.id:
            if head is not None:
                out.append(_instance(head, product, tuple(nodes)))
            head, product, nodes = row, _product(row), []
        if row.n_ordinal is not None:
            nodes.append(_node(product, row, unseal))
    if head is not None:
        out.append(_instance(head, product, tuple(nodes)))
    return out


def _product(row: Any) -> Product:
    product = _PRODUCTS.get(row.product)
    if product is None:
        raise InternalError(f"instance {row.id} has an unknown product")
    return product


def _source(value: str) -> KeySource:
    source = _SOURCES.get(value)
    if source is None:
        raise InternalError("a stored record has an unknown source")
    return source


def _instance(row: Any, product: Product, stored: tuple[Node, ...]) -> Instance:
    nodes = tuple(n for n in stored if n.role is not NodeRole.SENTINEL)
    sentinels = tuple(n for n in stored if n.role is NodeRole.SENTINEL)
    return Instance(
        id=row.id,
        tenant_id=row.tenant_id,
        product=product,
        region=row.region,
        name=row.name,
        password_free_allowed=bool(row.password_free_allowed),
        allow_admin_reset=bool(row.allow_admin_reset),
        cluster=bool(row.cluster),
        nodes=nodes,
        sentinels=sentinels,
        no_auth=None if row.no_auth is None else bool(row.no_auth),
        engine_version=row.engine_version,
        source=_source(row.source),
        created_at=row.created_at,
        labels=labels_of(getattr(row, "labels", None)),
    )


def labels_text(labels: tuple[tuple[str, str], ...]) -> str | None:
    """An instance's labels as stored: a sorted JSON object, NULL for none."""
    return json.dumps(dict(labels), sort_keys=True, separators=(",", ":")) if labels else None


def labels_of(text: str | None) -> tuple[tuple[str, str], ...]:
    if not text:
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in json.loads(text).items()))


# --------------------------------------------------------------------------- keys and tasks


def access_key_from_row(
    row: Any, unseal: Unseal, policies: tuple[str, ...] | None = None
) -> AccessKey:
    """``policies``: the key's resolved documents (``keyturn.store.policies``)."""
    return AccessKey(
        id=row.id,
        tenant_id=row.tenant_id,
        secret=Secret(unseal(row.secret_sealed, key_secret_context(row.id))),
        enabled=bool(row.enabled),
        source=_source(row.source),
        created_at=row.created_at,
        policies=policies,
    )


def task_from_row(row: Any) -> Task:
    return Task(
        id=int(row.id),
        tenant_id=row.tenant_id,
        instance_id=row.instance_id,
        account=row.account,
        kind=TaskKind(row.kind),
        state=TaskState(row.state),
        message=row.message,
        request_id=row.request_id,
        steps=steps_from_json(row.steps),
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        verified_at=row.verified_at,
        owner=row.owner,
        fence=int(row.fence),
        lease_until=row.lease_until,
        error_code=row.error_code,
        session_marks=marks_from_json(getattr(row, "session_marks", None)),
    )
