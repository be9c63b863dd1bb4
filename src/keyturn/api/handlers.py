"""The admin API's handlers: each turns one validated request into one ``Operator`` call and
its answer into JSON (``keyturn.api.views``). Business rules live in the service layer; here
are only the HTTP shapes: paths, paging parameters, the ``Answer`` a route's declaration
(``keyturn.api.spec``) sends with its status.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from keyturn.api import views
from keyturn.core.errors import InvalidParameterValue, MissingParameter
from keyturn.core.model import Product, Tenant
from keyturn.core.secrets import Secret
from keyturn.core.store_ports import Page
from keyturn.service.context import Answer
from keyturn.service.fleet import FleetJobs
from keyturn.service.operator import Operator
from keyturn.service.operator_scope import Scope


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """A validated request: path parameters, typed query parameters and the body object."""

    scope: Scope
    operator: Operator
    path: dict[str, str]
    query: dict[str, Any]
    body: dict[str, Any]
    #: Fleet rotation jobs (``keyturn.api.fleet_handlers``), where the runtime serves them.
    fleet: FleetJobs | None = None


Handler = Callable[[Call], Awaitable[Answer]]


def _page(call: Call) -> Page:
    return Page(limit=int(call.query["limit"]), offset=int(call.query["offset"]))


def _paged(items: list[dict[str, Any]], total: int, page: Page) -> dict[str, Any]:
    return {"items": items, "total": total, "offset": page.offset, "limit": page.limit}


def _moment(call: Call, name: str) -> datetime | None:
    raw = call.query.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(str(raw))
    except ValueError:
        raise InvalidParameterValue(f"{name} must be an RFC 3339 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# ---------------------------------------------------------------------- tenants


async def list_tenants(call: Call) -> Answer:
    found = await call.operator.tenants(call.scope)
    return Answer({"items": [views.tenant(t) for t in found]})


async def create_tenant(call: Call) -> Answer:
    tenant = Tenant(id=call.body["id"], name=call.body.get("name", ""))
    return Answer(views.tenant(await call.operator.create_tenant(call.scope, tenant)))


async def delete_tenant(call: Call) -> Answer:
    await call.operator.delete_tenant(call.scope, call.path["tenant_id"])
    return Answer({})


# ---------------------------------------------------------------------- access keys


async def list_keys(call: Call) -> Answer:
    found = await call.operator.keys(call.scope, call.query.get("tenant"))
    return Answer({"items": [views.key(k) for k in found]})


async def create_key(call: Call) -> Answer:
    names = call.body.get("policies")
    created = await call.operator.create_key(
        call.scope, call.body["tenant"], None if names is None else list(dict.fromkeys(names))
    )
    return Answer(views.created_key(created, administrator=names is None))


async def get_key(call: Call) -> Answer:
    found = await call.operator.key(call.scope, call.path["key_id"])
    attached = await call.operator.key_policies(call.scope, found.id)
    return Answer(views.key(found, attached))


async def change_key(call: Call) -> Answer:
    changed = await call.operator.set_key_enabled(
        call.scope, call.path["key_id"], bool(call.body["enabled"])
    )
    attached = await call.operator.key_policies(call.scope, changed.id)
    return Answer(views.key(changed, attached))


async def revoke_key(call: Call) -> Answer:
    await call.operator.set_key_enabled(call.scope, call.path["key_id"], False)
    return Answer({})


async def attach_policy(call: Call) -> Answer:
    attached = await call.operator.attach_policy(call.scope, call.path["key_id"], call.path["name"])
    return Answer(views.attached(attached))


async def detach_policy(call: Call) -> Answer:
    attached = await call.operator.detach_policy(call.scope, call.path["key_id"], call.path["name"])
    return Answer(views.attached(attached))


# ---------------------------------------------------------------------- policies


async def list_policies(call: Call) -> Answer:
    found = await call.operator.policies(call.scope, call.query.get("tenant"))
    return Answer({"items": [views.policy(p) for p in found]})


async def get_policy(call: Call) -> Answer:
    found = await call.operator.policy(call.scope, call.path["tenant_id"], call.path["name"])
    return Answer(views.policy(found))


async def put_policy(call: Call) -> Answer:
    document = json.dumps(call.body["document"])
    saved = await call.operator.put_policy(
        call.scope, call.path["tenant_id"], call.path["name"], document
    )
    return Answer(views.policy(saved))


async def delete_policy(call: Call) -> Answer:
    await call.operator.delete_policy(call.scope, call.path["tenant_id"], call.path["name"])
    return Answer({})


async def check_policy(call: Call) -> Answer:
    decided = await call.operator.explain(
        call.scope, call.body["key_id"], call.body["action"], call.body["resource"]
    )
    return Answer(views.decision(decided))


# ---------------------------------------------------------------------- instances


async def list_instances(call: Call) -> Answer:
    page = _page(call)
    product = call.query.get("product")
    found, total = await call.operator.instances(
        call.scope,
        tenant_id=call.query.get("tenant"),
        product=None if product is None else Product(product),
        instance_id=call.query.get("id"),
        page=page,
        text=call.query.get("q"),
    )
    return Answer(_paged([views.instance(i) for i in found], total, page))


async def get_instance(call: Call) -> Answer:
    found = await call.operator.instance(call.scope, call.path["instance_id"])
    health = await call.operator.health(found)
    return Answer({"instance": views.instance(found), "health": views.health(health)})


async def list_accounts(call: Call) -> Answer:
    found = await call.operator.accounts(call.scope, call.path["instance_id"])
    return Answer({"items": [views.account(a) for a in found]})


async def create_reset(call: Call) -> Answer:
    task = await call.operator.reset(
        call.scope,
        call.path["instance_id"],
        call.body["account"],
        Secret(call.body["password"]),
    )
    return Answer(views.task(task), task_id=task.id)


async def list_sessions(call: Call) -> Answer:
    account = call.query.get("account")
    if account is None:
        raise MissingParameter("query parameter account is required")
    report = await call.operator.sessions(
        call.scope, call.path["instance_id"], account, since=_moment(call, "since")
    )
    return Answer(views.sessions(report))


async def end_sessions(call: Call) -> Answer:
    since = call.body.get("since")
    report = await call.operator.end_sessions(
        call.scope,
        call.path["instance_id"],
        call.body["account"],
        since=_moment(replace(call, query={"since": since}), "since"),
    )
    return Answer(views.sessions(report))


# ---------------------------------------------------------------------- tasks


async def list_tasks(call: Call) -> Answer:
    page = _page(call)
    found, total = await call.operator.tasks(
        call.scope,
        tenant_id=call.query.get("tenant"),
        instance_id=call.query.get("instance_id"),
        page=page,
    )
    return Answer(_paged([views.task(t, steps=False) for t in found], total, page))


async def get_task(call: Call) -> Answer:
    raw = call.path["task_id"]
    # Task ids are below 2**53; anything else names no task (the same 404 as a missing one).
    task_id = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 16 else 0
    return Answer(views.task(await call.operator.task(call.scope, task_id)))


# ---------------------------------------------------------------------- audit, nodes


async def search_audit(call: Call) -> Answer:
    limit = int(call.query["limit"])
    found = await call.operator.audit(
        call.scope,
        tenant_id=call.query.get("tenant"),
        action=call.query.get("action"),
        outcome=call.query.get("outcome"),
        request_id=call.query.get("request_id"),
        since=_moment(call, "since"),
        until=_moment(call, "until"),
        before=call.query.get("before"),
        limit=limit,
    )
    next_before = found[-1].seq if len(found) == limit and found[-1].seq > 1 else None
    return Answer({"items": [views.audit_record(r) for r in found], "next_before": next_before})


async def chain_status(call: Call) -> Answer:
    return Answer(views.chain(await call.operator.chain(call.scope)))


async def list_nodes(call: Call) -> Answer:
    return Answer(views.nodes(await call.operator.nodes(call.scope)))
