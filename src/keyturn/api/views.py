"""Domain values as the admin API's JSON (the shapes ``keyturn.api.schemas`` declares).

Nothing here can render a secret: node URLs are their public form (no password), access keys
never carry their secret except in ``created_key``, and tasks have no password field at all.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from keyturn.core.access import Decision, KeyPolicies, NamedPolicy
from keyturn.core.cluster import HeldTask, NodeView
from keyturn.core.engine_ports import AccountInfo
from keyturn.core.model import AccessKey, Instance, Tenant
from keyturn.core.tasks import Task
from keyturn.service.operator_scope import AuditRecordView, ChainView, InstanceHealth
from keyturn.service.sessions import SessionReport


def when(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def tenant(value: Tenant) -> dict[str, Any]:
    return {"id": value.id, "name": value.name}


def attached(policies: KeyPolicies | None) -> dict[str, Any]:
    return {
        "administrator": policies is None,
        "names": [] if policies is None else list(policies.names),
        "inline": policies is not None and policies.inline is not None,
    }


def key(value: AccessKey, policies: KeyPolicies | None = None) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": value.id,
        "tenant": value.tenant_id,
        "enabled": value.enabled,
        "source": str(value.source),
        "created_at": when(value.created_at),
        "administrator": value.policies is None,
    }
    if policies is not None or value.policies is None:
        shown["policies"] = attached(policies)
    return shown


def created_key(value: AccessKey, *, administrator: bool) -> dict[str, Any]:
    """A new key with its secret: the one answer that shows a secret, once."""
    shown = key(value)
    shown.pop("policies", None)
    return {**shown, "administrator": administrator, "secret": value.secret.reveal()}


def policy(value: NamedPolicy) -> dict[str, Any]:
    document = json.loads(value.document)
    return {
        "tenant": value.tenant_id,
        "name": value.name,
        "document": document if isinstance(document, dict) else {},
        "source": str(value.source),
        "created_at": when(value.created_at),
    }


def decision(value: Decision) -> dict[str, Any]:
    return {"allowed": value.allowed, "reason": value.reason, "explicit": value.explicit}


def topology(value: Instance) -> str:
    if value.cluster:
        return "cluster"
    return "sentinel" if value.sentinels else "declared"


def instance(value: Instance) -> dict[str, Any]:
    return {
        "id": value.id,
        "tenant": value.tenant_id,
        "product": str(value.product),
        "region": value.region,
        "name": value.name,
        "topology": topology(value),
        "cluster": value.cluster,
        "nodes": [
            {"ordinal": n.ordinal, "url": n.address.public_url(), "role": str(n.role)}
            for n in (*value.nodes, *value.sentinels)
        ],
        "password_free_allowed": value.password_free_allowed,
        "allow_admin_reset": value.allow_admin_reset,
        "no_auth": value.no_auth,
        "engine_version": value.engine_version,
        "source": str(value.source),
        "created_at": when(value.created_at),
        "labels": dict(value.labels),
    }


def health(value: InstanceHealth) -> dict[str, Any]:
    return {
        "status": value.status,
        "shape": value.shape,
        "detail": value.detail,
        "nodes": [{"endpoint": n.endpoint, "role": n.role, "shard": n.shard} for n in value.nodes],
    }


def account(value: AccountInfo) -> dict[str, Any]:
    return {
        "name": value.name,
        "enabled": value.enabled,
        "password_free": value.password_free,
        "privilege": value.privilege,
    }


def sessions(report: SessionReport) -> dict[str, Any]:
    return {
        "instance": report.instance_id,
        "account": report.account,
        "since": when(report.since),
        "items": [
            {
                "node": v.session.node,
                "id": v.session.id,
                "account": v.session.account,
                "client_addr": v.session.client_addr,
                "client_name": v.session.client_name,
                "connected_at": when(v.session.connected_at),
                "idle_seconds": v.session.idle_seconds,
                "state": v.session.state,
                "old": v.old,
                "old_by": v.by or None,
            }
            for v in report.sessions
        ],
        "old": len(report.old),
        "ended": report.ended,
        "unreachable": [{"node": n, "reason": r} for n, r in report.unreachable],
        "failures": [{"node": n, "reason": r} for n, r in report.failures],
    }


def task(value: Task, *, steps: bool = True) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": value.id,
        "tenant": value.tenant_id,
        "instance_id": value.instance_id,
        "account": value.account,
        "kind": str(value.kind),
        "state": str(value.state),
        "message": value.message,
        "request_id": value.request_id,
        "created_at": when(value.created_at),
        "started_at": when(value.started_at),
        "finished_at": when(value.finished_at),
        "verified_at": when(value.verified_at),
        "error_code": value.error_code,
    }
    if steps:
        shown["steps"] = [
            {"ordinal": s.ordinal, "endpoint": s.endpoint, "phase": str(s.phase), "note": s.note}
            for s in value.steps
        ]
    return shown


def audit_record(value: AuditRecordView) -> dict[str, Any]:
    e = value.event
    return {
        "seq": value.seq,
        "at": when(e.at),
        "tenant": e.tenant_id,
        "key_id": e.key_id,
        "source_ip": e.source_ip,
        "user_agent": e.user_agent,
        "vendor": e.vendor,
        "action": e.action,
        "neutral_action": e.neutral_action,
        "resource": e.resource,
        "outcome": str(e.outcome),
        "error_code": e.error_code,
        "request_id": e.request_id,
        "task_id": e.task_id,
        "hash": value.hash,
    }


def chain(value: ChainView) -> dict[str, Any]:
    return {
        "intact": value.intact,
        "records": value.records,
        "head_hash": value.head_hash,
        "bad_seq": value.bad_seq,
        "problem": value.problem,
    }


def held_task(value: HeldTask) -> dict[str, Any]:
    return {
        "id": value.id,
        "tenant": value.tenant_id,
        "instance_id": value.instance_id,
        "state": str(value.state),
        "owner": value.owner,
        "lease_until": when(value.lease_until),
    }


def nodes(views: list[NodeView]) -> dict[str, Any]:
    items = [
        {
            "id": v.node.id,
            "address": v.node.address,
            "version": v.node.version,
            "started_at": when(v.node.started_at),
            "heartbeat_at": when(v.node.heartbeat_at),
            "tasks": [held_task(t) for t in v.tasks],
        }
        for v in views
        if v.node is not None
    ]
    unowned = [held_task(t) for v in views if v.node is None for t in v.tasks]
    return {"items": items, "unowned_tasks": unowned}
