"""The JSON Schemas (OpenAPI 3.1 components) of the admin API's bodies and answers, as data.

Requests are validated against these by ``keyturn.api.validation``; the tests validate every
answer against them. Times are RFC 3339 strings in UTC, absent values ``null``. Secrets appear
in exactly one answer, ``CreatedAccessKey.secret``, once; a reset's password is ``writeOnly``.
"""

from __future__ import annotations

from typing import Any

from keyturn.core.audit import AuditOutcome
from keyturn.core.fleet import JobState, TargetState
from keyturn.core.model import KeySource, Product
from keyturn.core.tasks import StepPhase, TaskKind, TaskState

#: Ids in paths and bodies: what the store's columns hold at most.
ID = {"type": "string", "minLength": 1, "maxLength": 128}
NAME = {"type": "string", "maxLength": 200}
TIME = {"type": "string", "format": "date-time"}
TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
STRINGS = {"type": "array", "items": {"type": "string"}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: list[str], **properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _items(item: str, **extra: Any) -> dict[str, Any]:
    return _object(["items", *extra], items={"type": "array", "items": _ref(item)}, **extra)


PAGE = {"total": {"type": "integer"}, "offset": {"type": "integer"}, "limit": {"type": "integer"}}

COMPONENTS: dict[str, dict[str, Any]] = {
    "Problem": {
        "type": "object",
        "description": "An RFC 9457 problem document.",
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "code": {"type": "string", "description": "The stable domain error code."},
            "request_id": {"type": "string"},
        },
        "required": ["type", "title", "status", "detail", "code", "request_id"],
        "additionalProperties": False,
    },
    "Tenant": _object(["id", "name"], id=ID, name=NAME),
    "TenantList": _items("Tenant"),
    "NewTenant": _object(["id"], id={**ID, "maxLength": 64}, name=NAME),
    "AttachedPolicies": _object(
        ["administrator", "names", "inline"],
        administrator={"type": "boolean", "description": "No policy: the tenant's admin."},
        names=STRINGS,
        inline={"type": "boolean"},
    ),
    "AccessKey": _object(
        ["id", "tenant", "enabled", "source", "created_at", "administrator"],
        id=ID,
        tenant=ID,
        enabled={"type": "boolean"},
        source={"type": "string", "enum": [s.value for s in KeySource]},
        created_at=TIME_OR_NULL,
        administrator={"type": "boolean"},
        policies=_ref("AttachedPolicies"),
    ),
    "AccessKeyList": _items("AccessKey"),
    "CreatedAccessKey": _object(
        ["id", "tenant", "enabled", "source", "created_at", "administrator", "secret"],
        id=ID,
        tenant=ID,
        enabled={"type": "boolean"},
        source={"type": "string", "enum": [s.value for s in KeySource]},
        created_at=TIME_OR_NULL,
        administrator={"type": "boolean"},
        secret={"type": "string", "description": "The signing secret, shown only here."},
    ),
    "NewAccessKey": _object(
        ["tenant"],
        tenant=ID,
        policies={
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": 128},
            "maxItems": 50,
            "description": "Named policies to attach; absent: an administrator key.",
        },
    ),
    "AccessKeyChange": _object(["enabled"], enabled={"type": "boolean"}),
    "Policy": _object(
        ["tenant", "name", "document", "source", "created_at"],
        tenant=ID,
        name=ID,
        document={"type": "object"},
        source={"type": "string", "enum": [s.value for s in KeySource]},
        created_at=TIME_OR_NULL,
    ),
    "PolicyList": _items("Policy"),
    "PolicyDocument": _object(["document"], document={"type": "object"}),
    "PolicyCheck": _object(
        ["key_id", "action", "resource"],
        key_id=ID,
        action={"type": "string", "minLength": 1, "maxLength": 256},
        resource={"type": "string", "minLength": 1, "maxLength": 1024},
    ),
    "Decision": _object(
        ["allowed", "reason", "explicit"],
        allowed={"type": "boolean"},
        reason={"type": "string"},
        explicit={"type": "boolean"},
    ),
    "InstanceNode": _object(
        ["ordinal", "url", "role"],
        ordinal={"type": "integer"},
        url={"type": "string", "description": "The admin URL without its password."},
        role={"type": "string"},
    ),
    "Instance": _object(
        [
            "id",
            "tenant",
            "product",
            "region",
            "name",
            "topology",
            "cluster",
            "nodes",
            "password_free_allowed",
            "allow_admin_reset",
            "no_auth",
            "engine_version",
            "source",
            "created_at",
            "labels",
        ],
        id=ID,
        tenant=ID,
        product={"type": "string", "enum": [p.value for p in Product]},
        region={"type": "string"},
        name={"type": "string"},
        topology={"type": "string", "enum": ["declared", "sentinel", "cluster"]},
        cluster={"type": "boolean"},
        nodes={"type": "array", "items": _ref("InstanceNode")},
        password_free_allowed={"type": "boolean"},
        allow_admin_reset={"type": "boolean"},
        no_auth={"type": ["boolean", "null"]},
        engine_version={"type": ["string", "null"]},
        source={"type": "string", "enum": [s.value for s in KeySource]},
        created_at=TIME_OR_NULL,
        labels={"type": "object", "additionalProperties": {"type": "string"}},
    ),
    "InstanceList": _items("Instance", **PAGE),
    "NodeHealth": _object(
        ["endpoint", "role", "shard"],
        endpoint={"type": "string"},
        role={"type": "string", "enum": ["member", "primary", "replica", "sentinel"]},
        shard={"type": "string"},
    ),
    "Health": _object(
        ["status", "shape", "detail", "nodes"],
        status={"type": "string", "enum": ["ok", "unavailable"]},
        shape={"type": "string"},
        detail={"type": "string"},
        nodes={"type": "array", "items": _ref("NodeHealth")},
    ),
    "InstanceDetail": _object(
        ["instance", "health"], instance=_ref("Instance"), health=_ref("Health")
    ),
    "Account": _object(
        ["name", "enabled", "password_free", "privilege"],
        name={"type": "string"},
        enabled={"type": "boolean"},
        password_free={"type": "boolean"},
        privilege={"type": "string"},
    ),
    "AccountList": _items("Account"),
    "Session": _object(
        [
            "node",
            "id",
            "account",
            "client_addr",
            "client_name",
            "connected_at",
            "idle_seconds",
            "state",
            "old",
        ],
        node={"type": "string"},
        id={"type": "string"},
        account={"type": "string"},
        client_addr={"type": "string"},
        client_name={"type": "string"},
        connected_at=TIME_OR_NULL,
        idle_seconds={"type": ["number", "null"]},
        state={"type": "string"},
        old={
            "type": ["boolean", "null"],
            "description": "Opened before the last rotation (so logged in with the old"
            " password); null when that cannot be told.",
        },
        old_by={
            "type": ["string", "null"],
            "enum": ["start_time", "connection_id", "twin_role", None],
            "description": "What told: the session's start time, its connection id against"
            " the node's watermark taken at the rotation (MariaDB/MySQL), or the twin role"
            " rotated since (PostgreSQL overlaps).",
        },
    ),
    "NodeProblem": _object(["node", "reason"], node={"type": "string"}, reason={"type": "string"}),
    "SessionList": _object(
        ["instance", "account", "since", "items", "old", "ended", "unreachable", "failures"],
        instance={"type": "string"},
        account={"type": "string"},
        since=TIME_OR_NULL,
        items={"type": "array", "items": _ref("Session")},
        old={"type": "integer", "description": "Sessions that may still use the old password."},
        ended={"type": ["integer", "null"], "description": "Sessions ended by this call."},
        unreachable={"type": "array", "items": _ref("NodeProblem")},
        failures={"type": "array", "items": _ref("NodeProblem")},
    ),
    "EndSessions": _object(
        ["account"],
        account={"type": "string", "minLength": 1, "maxLength": 200},
        since={
            **TIME,
            "maxLength": 64,
            "description": "Compare with this time instead of the last rotation.",
        },
    ),
    "NewReset": _object(
        ["account", "password"],
        account={"type": "string", "minLength": 1, "maxLength": 200},
        password={
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "writeOnly": True,
            "description": "The new password (the product's rules apply); never echoed.",
        },
    ),
    "TaskStep": _object(
        ["ordinal", "endpoint", "phase", "note"],
        ordinal={"type": "integer"},
        endpoint={"type": "string"},
        phase={"type": "string", "enum": [p.value for p in StepPhase]},
        note={"type": "string"},
    ),
    "Task": _object(
        [
            "id",
            "tenant",
            "instance_id",
            "account",
            "kind",
            "state",
            "message",
            "request_id",
            "created_at",
            "started_at",
            "finished_at",
            "verified_at",
            "error_code",
        ],
        id={"type": "integer"},
        tenant=ID,
        instance_id={"type": "string"},
        account={"type": "string"},
        kind={"type": "string", "enum": [k.value for k in TaskKind]},
        state={"type": "string", "enum": [s.value for s in TaskState]},
        message={"type": "string"},
        request_id={"type": "string"},
        created_at=TIME,
        started_at=TIME_OR_NULL,
        finished_at=TIME_OR_NULL,
        verified_at=TIME_OR_NULL,
        error_code={"type": ["string", "null"]},
        steps={"type": "array", "items": _ref("TaskStep")},
    ),
    "TaskList": _items("Task", **PAGE),
    "AuditRecord": _object(
        [
            "seq",
            "at",
            "tenant",
            "key_id",
            "source_ip",
            "user_agent",
            "vendor",
            "action",
            "neutral_action",
            "resource",
            "outcome",
            "error_code",
            "request_id",
            "task_id",
            "hash",
        ],
        seq={"type": "integer"},
        at=TIME,
        tenant={"type": "string"},
        key_id={"type": "string"},
        source_ip={"type": "string"},
        user_agent={"type": "string"},
        vendor={"type": "string"},
        action={"type": "string"},
        neutral_action={"type": "string"},
        resource={"type": "string"},
        outcome={"type": "string", "enum": [o.value for o in AuditOutcome]},
        error_code={"type": "string"},
        request_id={"type": "string"},
        task_id={"type": "string"},
        hash={"type": "string"},
    ),
    "AuditPage": _items(
        "AuditRecord",
        next_before={
            "type": ["integer", "null"],
            "description": "Pass as `before` for the next (older) page; null: no more.",
        },
    ),
    "ChainStatus": _object(
        ["intact", "records", "head_hash", "bad_seq", "problem"],
        intact={"type": "boolean"},
        records={"type": "integer"},
        head_hash={"type": "string"},
        bad_seq={"type": ["integer", "null"]},
        problem={"type": "string"},
    ),
    "HeldTask": _object(
        ["id", "tenant", "instance_id", "state", "owner", "lease_until"],
        id={"type": "integer"},
        tenant=ID,
        instance_id={"type": "string"},
        state={"type": "string", "enum": [s.value for s in TaskState]},
        owner={"type": ["string", "null"]},
        lease_until=TIME_OR_NULL,
    ),
    "Node": _object(
        ["id", "address", "version", "started_at", "heartbeat_at", "tasks"],
        id={"type": "string"},
        address={"type": "string"},
        version={"type": "string"},
        started_at=TIME,
        heartbeat_at=TIME,
        tasks={"type": "array", "items": _ref("HeldTask")},
    ),
    "NodeList": _items("Node", unowned_tasks={"type": "array", "items": _ref("HeldTask")}),
    "NewFleetJob": _object(
        ["tenant"],
        tenant={**ID, "maxLength": 64},
        product={"type": "string", "enum": [p.value for p in Product]},
        instances={"type": "string", "minLength": 1, "maxLength": 200,
                   "description": "A glob over instance ids (crs-prod-*)."},
        region={"type": "string", "minLength": 1, "maxLength": 64},
        accounts={"type": "array", "maxItems": 8, "items": {"type": "string", "minLength": 1,
                  "maxLength": 210}, "description": "NAME, or ENGINE:NAME (redis, postgres, "
                  "mysql); Redis defaults to default, the instance password."},
        labels={"type": "array", "maxItems": 32, "items": {"type": "string", "minLength": 2,
                "maxLength": 128, "pattern": "^[a-z0-9][a-z0-9_.-]*=[A-Za-z0-9_.-]*$"},
                "description": "KEY=VALUE each; an instance is selected if it has them all."},
        canary={"type": "integer", "minimum": 1, "maximum": 10_000, "default": 1},
        max_in_flight={"type": "integer", "minimum": 1, "maximum": 1_000, "default": 8},
        stop_after_failures={"type": "string", "maxLength": 16, "pattern": "^[0-9.]+%?$",
                             "default": "0",
                             "description": "Pause past N failures, or PCT% of finished."},
        paused={"type": "boolean", "default": False,
                "description": "Write the job paused: review its targets, then resume it."},
    ),
    "FleetCounts": _object(
        ["total", "pending", "in_flight", "succeeded", "failed", "rolled_back"],
        total={"type": "integer"},
        pending={"type": "integer"},
        in_flight={"type": "integer"},
        succeeded={"type": "integer"},
        failed={"type": "integer"},
        rolled_back={"type": "integer"},
    ),
    "FleetJob": _object(
        ["id", "tenant", "state", "reason", "waves", "counts", "selector", "canary",
         "max_in_flight", "stop_after_failures", "created_at", "updated_at"],
        id={"type": "string"},
        tenant=ID,
        state={"type": "string", "enum": [s.value for s in JobState]},
        reason={"type": "string"},
        waves={"type": "integer"},
        counts=_ref("FleetCounts"),
        selector=_object(
            ["product", "instances", "region", "accounts", "labels"],
            product={"type": ["string", "null"]},
            instances={"type": ["string", "null"]},
            region={"type": ["string", "null"]},
            accounts={"type": "object", "additionalProperties": {"type": "string"}},
            labels={"type": "object", "additionalProperties": {"type": "string"}},
        ),
        canary={"type": "integer"},
        max_in_flight={"type": "integer"},
        stop_after_failures={"type": "string"},
        created_at=TIME,
        updated_at=TIME,
    ),
    "FleetJobList": _items("FleetJob"),
    "FleetTarget": _object(
        ["seq", "instance_id", "product", "account", "wave", "state", "reason", "task_id",
         "attempts", "delivered_to", "flow_id"],
        seq={"type": "integer"},
        instance_id={"type": "string"},
        product={"type": "string"},
        account={"type": "string"},
        wave={"type": "integer"},
        state={"type": "string", "enum": [s.value for s in TargetState]},
        reason={"type": "string"},
        task_id={"type": ["integer", "null"]},
        attempts={"type": "integer"},
        delivered_to={"type": "string"},
        flow_id={"type": ["string", "null"],
                 "description": "The secret rotation flow the target rotated through."},
    ),
    "FleetTargetPage": _items("FleetTarget", next_after={"type": ["integer", "null"]}),
}  # fmt: skip
