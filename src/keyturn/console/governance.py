"""The console's pages about who may do what and what was done: the audit trail (search, the
chain verified or not), policies (view, edit, the decision simulator that
``keyturn policies check`` also is), access keys (enable, disable) and the nodes of the
cluster with the tasks they hold.

Changes are audited through the gate (``console:PutPolicy``, ``console:EnableKey``...). An
access key's secret is never shown: the console lists keys, it does not make them.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from keyturn.console.html import Html, badge, field, href, link, table, tag
from keyturn.console.layout import Outcome, layout, redirect, when
from keyturn.core.errors import InvalidParameterValue
from keyturn.service.context import Answer

if TYPE_CHECKING:
    from keyturn.console.app import Visit

AUDIT_PAGE = 50
#: What the new-policy editor starts with (a valid document to change).
_TEMPLATE = json.dumps(
    {
        "version": "2.0",
        "statement": [
            {"effect": "allow", "action": ["redis:DescribeInstances"], "resource": ["*"]}
        ],
    },
    indent=2,
)
_NAME = r"[A-Za-z0-9_.:@+=,-]{1,128}"


async def dispatch(visit: Visit, method: str, path: str) -> Outcome | None:
    if method == "GET" and path == "/audit":
        return await audit(visit)
    if method == "GET" and path == "/policies":
        return await policies(visit)
    if method == "POST" and path == "/policies":
        return await save_policy(visit)
    if method == "POST" and path == "/policies/check":
        return await check(visit)
    found = re.fullmatch(rf"/policies/({_NAME})/({_NAME})", path)
    if found and method == "GET":
        return await policy(visit, found[1], found[2])
    if method == "GET" and path == "/keys":
        return await keys(visit)
    found = re.fullmatch(rf"/keys/({_NAME})", path)
    if found and method == "POST":
        return await change_key(visit, found[1])
    if method == "GET" and path == "/nodes":
        return await nodes(visit)
    return None


# ---------------------------------------------------------------------- audit


async def audit(visit: Visit) -> Outcome:
    q = visit.query
    action = q.get("action", "").strip()[:128] or None
    outcome = q.get("outcome", "").strip() or None
    request_id = q.get("request_id", "").strip()[:128] or None
    raw_before = q.get("before", "")
    before = int(raw_before) if raw_before.isdigit() and len(raw_before) < 16 else None
    found = await visit.operator.audit(
        visit.scope,
        tenant_id=None,
        action=action,
        outcome=outcome,
        request_id=request_id,
        since=None,
        until=None,
        before=before,
        limit=AUDIT_PAGE,
    )
    chain = await visit.operator.chain(visit.scope)
    status = (
        tag(
            "p", badge("verified"), f" the chain of {chain.records:,} records is intact", id="chain"
        )
        if chain.intact
        else tag(
            "p",
            badge("broken"),
            f" the chain is broken at record {chain.bad_seq}: {chain.problem}",
            id="chain",
        )
    )
    outcomes = [tag("option", "any outcome", value="")] + [
        tag("option", o, value=o, selected=o == outcome)
        for o in ("started", "succeeded", "failed", "denied")
    ]
    search = tag(
        "form",
        field(
            "Action",
            tag(
                "input",
                type="text",
                name="action",
                value=action or "",
                id="audit-action",
                placeholder="e.g. console:ResetPassword",
            ),
        ),
        field("Outcome", tag("select", *outcomes, name="outcome")),
        field("Request id", tag("input", type="text", name="request_id", value=request_id or "")),
        tag("button", "Search", type="submit", id="audit-search"),
        method="get",
        action="/console/audit",
        class_="filters",
    )
    rows = [
        (
            r.seq,
            when(r.event.at),
            r.event.tenant_id,
            r.event.key_id,
            r.event.action,
            r.event.resource,
            badge(str(r.event.outcome)),
            r.event.error_code,
            link(f"/console/tasks/{r.event.task_id}", r.event.task_id) if r.event.task_id else "",
            r.event.source_ip,
        )
        for r in found
    ]
    more: Html | str = ""
    if len(found) == AUDIT_PAGE and found[-1].seq > 1:
        query = {
            "action": action,
            "outcome": outcome,
            "request_id": request_id,
            "before": found[-1].seq,
        }
        more = tag(
            "div", link(href("/console/audit", query), "older »", rel="next"), class_="pager"
        )
    return Outcome(
        html=layout(
            visit,
            "Audit",
            status,
            search,
            table(
                (
                    "seq",
                    "when",
                    "tenant",
                    "key / token",
                    "action",
                    "resource",
                    "outcome",
                    "code",
                    "task",
                    "source",
                ),
                rows,
                id="audit",
            ),
            more,
        )
    )


# ---------------------------------------------------------------------- policies


async def policies(visit: Visit) -> Outcome:
    found = await visit.operator.policies(visit.scope, None)
    keys = await visit.operator.keys(visit.scope, None)
    rows = [
        (
            link(f"/console/policies/{p.tenant_id}/{p.name}", p.name),
            p.tenant_id,
            str(p.source),
            when(p.created_at),
        )
        for p in found
    ]
    tenant = visit.token.tenant_id or ""
    editor = _editor(visit, tenant, "", _TEMPLATE)
    key_options = [tag("option", k.id, " (", k.tenant_id, ")", value=k.id) for k in keys]
    simulator = tag(
        "form",
        visit.csrf_field(),
        field("Access key", tag("select", *key_options, name="key_id", id="check-key")),
        field(
            "Action",
            tag(
                "input",
                type="text",
                name="action",
                id="check-action",
                required=True,
                placeholder="redis:ResetPassword",
            ),
        ),
        field(
            "Resource",
            tag(
                "input",
                type="text",
                name="resource",
                id="check-resource",
                required=True,
                placeholder="qcs::redis:ap-guangzhou:uin/…:instance/crs-…",
            ),
        ),
        tag("button", "Check", type="submit", id="check"),
        method="post",
        action="/console/policies/check",
        class_="filters",
    )
    return Outcome(
        html=layout(
            visit,
            "Policies",
            table(("name", "tenant", "source", "created"), rows, id="policies"),
            tag("h2", "Decision simulator"),
            simulator,
            tag("h2", "New policy"),
            editor,
        )
    )


def _editor(visit: Visit, tenant: str, name: str, document: str) -> Html:
    return tag(
        "form",
        visit.csrf_field(),
        field("Tenant", tag("input", type="text", name="tenant", value=tenant, required=True)),
        field("Name", tag("input", type="text", name="name", value=name, required=True)),
        field(
            "Document (JSON)",
            tag("textarea", document, name="document", rows=14, cols=80, id="policy-document"),
        ),
        tag("button", "Save", type="submit", id="save-policy"),
        method="post",
        action="/console/policies",
        class_="editor",
    )


async def policy(visit: Visit, tenant: str, name: str) -> Outcome:
    found = await visit.operator.policy(visit.scope, tenant, name)
    try:
        document = json.dumps(json.loads(found.document), indent=2)
    except ValueError:
        document = found.document
    return Outcome(
        html=layout(
            visit,
            f"Policy {found.name}",
            tag("p", "Tenant ", found.tenant_id, ", ", str(found.source)),
            _editor(visit, found.tenant_id, found.name, document),
        )
    )


async def save_policy(visit: Visit) -> Outcome:
    tenant = visit.form.get("tenant", "").strip()
    name = visit.form.get("name", "").strip()
    document = visit.form.get("document", "")
    if not re.fullmatch(_NAME, tenant) or not re.fullmatch(_NAME, name):
        raise InvalidParameterValue("a tenant and a policy name of letters, digits and _.:@+=,-")

    async def put() -> Answer:
        await visit.operator.put_policy(visit.scope, tenant, name, document)
        return Answer({})

    await visit.audited("PutPolicy", f"policies/{tenant}/{name}", tenant, put)
    return redirect(f"/policies/{tenant}/{name}")


async def check(visit: Visit) -> Outcome:
    key_id = visit.form.get("key_id", "")
    action = visit.form.get("action", "")[:256]
    resource = visit.form.get("resource", "")[:1024]
    decided = await visit.operator.explain(visit.scope, key_id, action, resource)
    verdict = (
        "allowed" if decided.allowed else ("explicitly denied" if decided.explicit else "denied")
    )
    return Outcome(
        html=layout(
            visit,
            "Decision",
            tag(
                "p",
                badge(verdict),
                " ",
                action,
                " on ",
                tag("code", resource),
                " for ",
                key_id,
                id="decision",
            ),
            tag("p", decided.reason, id="decision-reason"),
            link("/console/policies", "Back to the policies"),
        )
    )


# ---------------------------------------------------------------------- keys, nodes


async def keys(visit: Visit) -> Outcome:
    found = await visit.operator.keys(visit.scope, None)
    rows = [
        (
            k.id,
            k.tenant_id,
            badge("enabled" if k.enabled else "disabled"),
            "administrator" if k.policies is None else "policies",
            str(k.source),
            when(k.created_at),
            tag(
                "form",
                visit.csrf_field(),
                tag("input", type="hidden", name="enabled", value="0" if k.enabled else "1"),
                tag("button", "Disable" if k.enabled else "Enable", type="submit"),
                method="post",
                action=f"/console/keys/{k.id}",
            ),
        )
        for k in found
    ]
    return Outcome(
        html=layout(
            visit,
            "Access keys",
            table(("key", "tenant", "state", "rights", "source", "created", ""), rows, id="keys"),
        )
    )


async def change_key(visit: Visit, key_id: str) -> Outcome:
    enabled = visit.form.get("enabled") == "1"
    key = await visit.operator.key(visit.scope, key_id)

    async def change() -> Answer:
        await visit.operator.set_key_enabled(visit.scope, key.id, enabled)
        return Answer({})

    await visit.audited(
        "EnableKey" if enabled else "DisableKey", f"keys/{key.id}", key.tenant_id, change
    )
    return redirect("/keys")


async def nodes(visit: Visit) -> Outcome:
    views = await visit.operator.nodes(visit.scope)
    rows = []
    for v in views:
        held = ", ".join(str(t.id) for t in v.tasks) or "—"
        if v.node is None:
            rows.append(("(no node: orphaned)", "", "", "", "", held))
        else:
            n = v.node
            rows.append(
                (n.id, n.address, n.version, when(n.started_at), when(n.heartbeat_at), held)
            )
    return Outcome(
        html=layout(
            visit,
            "Nodes",
            table(
                ("node", "address", "version", "started", "heartbeat", "tasks held"),
                rows,
                id="nodes",
            ),
        )
    )
