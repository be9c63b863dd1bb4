"""Every admin API route, declared once, and the OpenAPI 3.1 document generated from them.

A ``Route`` names its method and path, its operation (``ListInstances``: the OpenAPI
``operationId`` and the audited action ``admin:ListInstances``), its query parameters and body
(JSON Schemas, validated by ``keyturn.api.validation``), the component its answer follows
(``keyturn.api.schemas``) and its status. ``document()`` is what ``/admin/v1/openapi.json``
serves and what the tests validate answers against.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from keyturn import __version__
from keyturn.api import fleet_handlers as fh
from keyturn.api import handlers as h
from keyturn.api.schemas import COMPONENTS, ID
from keyturn.core.audit import AuditOutcome
from keyturn.core.model import Product

PREFIX = "/admin/v1"
#: The most items one page holds (instances, tasks); audit pages hold up to ``MAX_AUDIT``.
MAX_PAGE = 100
MAX_AUDIT = 500
#: Path segments are at most this long (ids are at most 128 characters).
_SEGMENT = r"(?P<{}>[^/]{{1,256}})"

PAGING: dict[str, dict[str, Any]] = {
    "offset": {"type": "integer", "minimum": 0, "maximum": 10_000_000, "default": 0},
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50},
}
TENANT: dict[str, dict[str, Any]] = {
    "tenant": {**ID, "description": "Only this tenant's (a scoped token: its own only)."}
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    method: str
    path: str
    name: str
    summary: str
    tag: str
    handler: h.Handler | None
    response: str | None
    status: int = 200
    query: dict[str, dict[str, Any]] = field(default_factory=dict)
    body: str | None = None
    mutating: bool = False
    #: Answered without a token (only the OpenAPI document).
    public: bool = False
    #: Needs a token of every tenant (a tenant's token is refused, ``denied`` in the audit).
    all_tenants: bool = False

    @property
    def pattern(self) -> re.Pattern[str]:
        parts = re.split(r"\{(\w+)\}", self.path)
        regex = "".join(
            _SEGMENT.format(part) if i % 2 else re.escape(part) for i, part in enumerate(parts)
        )
        return re.compile(f"^{regex}$")

    @property
    def path_names(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.path)


def _r(method: str, path: str, name: str, summary: str, tag: str, **kw: Any) -> Route:
    return Route(method=method, path=PREFIX + path, name=name, summary=summary, tag=tag, **kw)


ROUTES: tuple[Route, ...] = (
    _r("GET", "/openapi.json", "GetOpenApi", "This document.", "meta", handler=None,
       response=None, public=True),
    _r("GET", "/tenants", "ListTenants", "Tenants (a scoped token: its own).", "tenants",
       handler=h.list_tenants, response="TenantList"),
    _r("POST", "/tenants", "CreateTenant", "Create a tenant (a token of every tenant only).",
       "tenants", handler=h.create_tenant, response="Tenant", status=201, body="NewTenant",
       mutating=True, all_tenants=True),
    _r("DELETE", "/tenants/{tenant_id}", "DeleteTenant",
       "Delete a tenant without keys or instances (a token of every tenant only).", "tenants",
       handler=h.delete_tenant, response=None, status=204, mutating=True, all_tenants=True),
    _r("GET", "/access-keys", "ListAccessKeys", "Access keys (never their secrets).",
       "access-keys", handler=h.list_keys, response="AccessKeyList", query=TENANT),
    _r("POST", "/access-keys", "CreateAccessKey",
       "Create an access key; its secret is in this answer only.", "access-keys",
       handler=h.create_key, response="CreatedAccessKey", status=201, body="NewAccessKey",
       mutating=True),
    _r("GET", "/access-keys/{key_id}", "GetAccessKey", "An access key and its policies.",
       "access-keys", handler=h.get_key, response="AccessKey"),
    _r("PATCH", "/access-keys/{key_id}", "UpdateAccessKey", "Enable or disable an access key.",
       "access-keys", handler=h.change_key, response="AccessKey", body="AccessKeyChange",
       mutating=True),
    _r("DELETE", "/access-keys/{key_id}", "RevokeAccessKey",
       "Revoke (disable) an access key: refused on every node within a second.",
       "access-keys", handler=h.revoke_key, response=None, status=204, mutating=True),
    _r("PUT", "/access-keys/{key_id}/policies/{name}", "AttachPolicy",
       "Attach a named policy of the key's tenant.", "policies", handler=h.attach_policy,
       response="AttachedPolicies", mutating=True),
    _r("DELETE", "/access-keys/{key_id}/policies/{name}", "DetachPolicy",
       "Detach a named policy.", "policies", handler=h.detach_policy,
       response="AttachedPolicies", mutating=True),
    _r("GET", "/policies", "ListPolicies", "Named policies.", "policies",
       handler=h.list_policies, response="PolicyList", query=TENANT),
    _r("POST", "/policies/check", "CheckPolicy",
       "What the API would decide for a key, an action and a resource, and why.", "policies",
       handler=h.check_policy, response="Decision", body="PolicyCheck"),
    _r("GET", "/policies/{tenant_id}/{name}", "GetPolicy", "A named policy.", "policies",
       handler=h.get_policy, response="Policy"),
    _r("PUT", "/policies/{tenant_id}/{name}", "PutPolicy", "Create or replace a named policy.",
       "policies", handler=h.put_policy, response="Policy", body="PolicyDocument",
       mutating=True),
    _r("DELETE", "/policies/{tenant_id}/{name}", "DeletePolicy",
       "Delete a named policy no key attaches.", "policies", handler=h.delete_policy,
       response=None, status=204, mutating=True),
    _r("GET", "/instances", "ListInstances", "Instances, in id order, a page at a time.",
       "instances", handler=h.list_instances, response="InstanceList",
       query={
           **TENANT,
           "product": {"type": "string", "enum": [p.value for p in Product]},
           "id": {**ID, "description": "Only the instance of this id."},
           "q": {"type": "string", "maxLength": 200,
                 "description": "Only instances whose id or name holds this text (any case)."},
           **PAGING,
       }),
    _r("GET", "/instances/{instance_id}", "GetInstance",
       "An instance with its nodes and roles as discovered now (health).", "instances",
       handler=h.get_instance, response="InstanceDetail"),
    _r("GET", "/instances/{instance_id}/accounts", "ListAccounts",
       "The instance's accounts, read live from the engine.", "instances",
       handler=h.list_accounts, response="AccountList"),
    _r("POST", "/instances/{instance_id}/resets", "ResetPassword",
       "Reset an account's password; answers the queued task (poll it until it ends).",
       "instances", handler=h.create_reset, response="Task", status=202, body="NewReset",
       mutating=True),
    _r("GET", "/instances/{instance_id}/sessions", "ListSessions",
       "An account's open sessions on every node; those opened before its last rotation (or"
       " `since`) may still use the old password.", "instances", handler=h.list_sessions,
       response="SessionList",
       query={"account": {"type": "string", "minLength": 1, "maxLength": 200,
                          "description": "The account (required)."},
              "since": {"type": "string", "maxLength": 64, "format": "date-time"}}),
    _r("POST", "/instances/{instance_id}/sessions/end", "EndSessions",
       "End an account's sessions opened before its last rotation (or `since`); audited with"
       " the count.", "instances", handler=h.end_sessions, response="SessionList",
       body="EndSessions", mutating=True),
    _r("GET", "/tasks", "ListTasks", "Tasks, newest first.", "tasks", handler=h.list_tasks,
       response="TaskList",
       query={**TENANT, "instance_id": {**ID, "description": "Only this instance's."},
              **PAGING}),
    _r("GET", "/tasks/{task_id}", "GetTask", "A task with its per-node steps.", "tasks",
       handler=h.get_task, response="Task"),
    _r("GET", "/audit", "SearchAudit", "Audit records, newest first, a page at a time.",
       "audit", handler=h.search_audit, response="AuditPage",
       query={
           **TENANT,
           "action": {"type": "string", "maxLength": 256},
           "outcome": {"type": "string", "enum": [o.value for o in AuditOutcome]},
           "request_id": {"type": "string", "maxLength": 128},
           "since": {"type": "string", "maxLength": 64, "format": "date-time"},
           "until": {"type": "string", "maxLength": 64, "format": "date-time"},
           "before": {"type": "integer", "minimum": 1, "maximum": 2**53,
                      "description": "Records older than this seq (the last page's next_before)."},
           "limit": {"type": "integer", "minimum": 1, "maximum": MAX_AUDIT, "default": 100},
       }),
    _r("GET", "/audit/chain", "VerifyAuditChain",
       "Walk the keyed hash chain (as keyturn audit verify).", "audit",
       handler=h.chain_status, response="ChainStatus"),
    _r("GET", "/nodes", "ListNodes", "keyturn nodes sharing the store and the tasks each holds.",
       "nodes", handler=h.list_nodes, response="NodeList"),
    _r("POST", "/fleet-jobs", "StartFleetJob",
       "Start a fleet rotation in waves (a node of the cluster drives it).", "fleet",
       handler=fh.start_job, response="FleetJob", status=202, body="NewFleetJob",
       mutating=True),
    _r("GET", "/fleet-jobs", "ListFleetJobs", "Fleet jobs, newest first.", "fleet",
       handler=fh.list_jobs, response="FleetJobList",
       query={**TENANT, "limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE,
                                  "default": 20}}),
    _r("GET", "/fleet-jobs/{job_id}", "GetFleetJob", "A fleet job's state and counts.", "fleet",
       handler=fh.get_job, response="FleetJob"),
    _r("GET", "/fleet-jobs/{job_id}/targets", "ListFleetTargets",
       "A fleet job's per-instance outcomes, in selection order (never passwords).", "fleet",
       handler=fh.list_targets, response="FleetTargetPage",
       query={"after": {"type": "integer", "minimum": -1, "maximum": 10_000_000, "default": -1,
                        "description": "Targets after this seq (the last page's next_after)."},
              "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}),
    _r("POST", "/fleet-jobs/{job_id}/pause", "PauseFleetJob",
       "Pause: no new change starts; changes in flight finish.", "fleet",
       handler=fh.pause_job, response="FleetJob", mutating=True),
    _r("POST", "/fleet-jobs/{job_id}/resume", "ResumeFleetJob",
       "Resume a paused job; its failed targets are tried again.", "fleet",
       handler=fh.resume_job, response="FleetJob", mutating=True),
    _r("POST", "/fleet-jobs/{job_id}/abort", "AbortFleetJob",
       "Abort: no new change starts; changes in flight finish.", "fleet",
       handler=fh.abort_job, response="FleetJob", mutating=True),
)  # fmt: skip

#: Path parameters' schemas (a task id is a string of digits in the path).
PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "tenant_id": {**ID, "maxLength": 64},
    "key_id": ID,
    "instance_id": ID,
    "task_id": {"type": "string", "pattern": "^[0-9]{1,16}$"},
    "job_id": {"type": "string", "pattern": "^fj-[0-9a-f]{12}$"},
    "name": ID,
}

_PROBLEM = {
    "description": "An RFC 9457 problem.",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


def _operation(route: Route) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": n, "in": "path", "required": True, "schema": PATH_PARAMETERS[n]}
        for n in route.path_names
    ]
    parameters += [
        {"name": n, "in": "query", "required": False, "schema": s} for n, s in route.query.items()
    ]
    if route.response is None and route.status == 204:
        success: dict[str, Any] = {"description": "Done."}
    elif route.response is None:
        success = {
            "description": "The OpenAPI document.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    else:
        ref = {"$ref": f"#/components/schemas/{route.response}"}
        success = {"description": "OK.", "content": {"application/json": {"schema": ref}}}
    operation: dict[str, Any] = {
        "operationId": route.name,
        "summary": route.summary,
        "tags": [route.tag],
        "responses": {str(route.status): success, "default": _PROBLEM},
    }
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{route.body}"}}
            },
        }
    if route.public:
        operation["security"] = []
    return operation


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "keyturn admin API",
            "version": __version__,
            "description": "Tenants, access keys, instances, accounts, resets, tasks, "
            "policies, the audit trail and nodes. Send an admin token (keyturn admin-tokens "
            "create) as `Authorization: Bearer <token>`; errors are RFC 9457 problems.",
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": COMPONENTS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
