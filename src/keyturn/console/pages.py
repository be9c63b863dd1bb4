"""The console's pages about the fleet: the overview, instances (filter, search, paging on the
store's own paged queries, so a deep page stays fast at 100,000), one instance (nodes and roles
from a live discovery, accounts read from the engine, its tasks, the reset dialog) and tasks
(with the JSON that the task page and the dialog poll until the task is final).

Every call goes through ``Operator`` with the admin token's ``Scope``, as the admin API's; a
reset is audited as ``console:ResetPassword``. The password a form posts goes straight into a
``Secret``: no page or JSON answer ever holds one. ``dispatch`` routes to these and to
``keyturn.console.governance``.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING

from keyturn.console import governance
from keyturn.console.html import Html, badge, field, href, link, table, tag
from keyturn.console.layout import Outcome, layout, pager, redirect, when
from keyturn.core.errors import DomainError, InvalidParameterValue
from keyturn.core.model import Instance, Product
from keyturn.core.ports import Page
from keyturn.core.secrets import Secret
from keyturn.core.tasks import Task
from keyturn.service.context import Answer
from keyturn.service.operator import PASSWORD_POLICIES

if TYPE_CHECKING:
    from keyturn.console.app import Visit

PAGE_SIZE = 50
#: The overview probes this many instances live (concurrently, each within the probe timeout).
HEALTH_SAMPLE = 10
_MAX_OFFSET = 10**9


async def dispatch(visit: Visit, method: str, path: str) -> Outcome | None:
    """The page for ``method path`` (None: no such page)."""
    if method == "GET" and path == "/":
        return await overview(visit)
    if method == "GET" and path == "/instances":
        return await instances(visit)
    found = re.fullmatch(r"/instances/([^/]{1,128})", path)
    if found and method == "GET":
        return await instance(visit, found[1])
    found = re.fullmatch(r"/instances/([^/]{1,128})/resets", path)
    if found and method == "POST":
        return await reset(visit, found[1])
    if method == "GET" and path == "/tasks":
        return await tasks(visit)
    found = re.fullmatch(r"/tasks/(\d{1,16})(\.json)?", path)
    if found and method == "GET":
        return await task(visit, int(found[1]), as_json=bool(found[2]))
    return await governance.dispatch(visit, method, path)


def _offset(visit: Visit) -> int:
    raw = visit.query.get("offset", "0")
    return min(int(raw), _MAX_OFFSET) if raw.isdigit() else 0


# ---------------------------------------------------------------------- overview


async def overview(visit: Visit) -> Outcome:
    op, scope = visit.operator, visit.scope
    counts = []
    for product in Product:
        _, total = await op.instances(
            scope, tenant_id=None, product=product, instance_id=None, page=Page(limit=1)
        )
        counts.append(
            (link(href("/console/instances", {"product": product}), str(product)), f"{total:,}")
        )
    sample, _ = await op.instances(
        scope, tenant_id=None, product=None, instance_id=None, page=Page(limit=HEALTH_SAMPLE)
    )
    healths = await asyncio.gather(*(op.health(i) for i in sample))
    health_rows = [
        (_instance_link(i), str(i.product), badge(h.status), h.detail)
        for i, h in zip(sample, healths, strict=True)
    ]
    recent, _ = await op.tasks(scope, tenant_id=None, instance_id=None, page=Page(limit=100))
    running = [t for t in recent if not t.state.final]
    failed = [t for t in recent if str(t.state) == "failed"]
    refusals = await op.audit(
        scope,
        tenant_id=None,
        action=None,
        outcome="denied",
        request_id=None,
        since=None,
        until=None,
        before=None,
        limit=10,
    )
    return Outcome(
        html=layout(
            visit,
            "Overview",
            tag(
                "section",
                tag(
                    "div",
                    tag("h2", "Instances by product"),
                    table(("product", "instances"), counts, id="by-product"),
                ),
                tag(
                    "div",
                    tag("h2", f"Health (the first {len(sample)} instances, probed now)"),
                    table(("instance", "product", "health", "detail"), health_rows, id="health"),
                ),
                class_="grid",
            ),
            tag(
                "h2",
                f"Tasks running ({len(running)}) and failed ({len(failed)}), of the newest 100",
            ),
            _task_table([*running, *failed], id="overview-tasks"),
            tag("h2", "Recent refusals"),
            table(
                ("when", "tenant", "key", "action", "code", "source"),
                [
                    (
                        when(r.event.at),
                        r.event.tenant_id,
                        r.event.key_id,
                        r.event.action,
                        r.event.error_code,
                        r.event.source_ip,
                    )
                    for r in refusals
                ],
                id="refusals",
            ),
        )
    )


# ---------------------------------------------------------------------- instances


async def instances(visit: Visit) -> Outcome:
    q = visit.query.get("q", "").strip()[:128]
    product_name = visit.query.get("product", "")
    tenant = visit.query.get("tenant", "").strip()[:128] or None
    try:
        product = Product(product_name) if product_name else None
    except ValueError:
        raise InvalidParameterValue("no such product") from None
    offset = _offset(visit)
    found, total = await visit.operator.instances(
        visit.scope,
        tenant_id=tenant,
        product=product,
        instance_id=None,
        page=Page(limit=PAGE_SIZE, offset=offset),
        text=q or None,
    )
    options = [tag("option", "every product", value="")] + [
        tag("option", str(p), value=str(p), selected=p == product) for p in Product
    ]
    search = tag(
        "form",
        field(
            "Search",
            tag("input", type="search", name="q", value=q, id="search", placeholder="id or name"),
        ),
        field("Product", tag("select", *options, name="product")),
        field("Tenant", tag("input", type="text", name="tenant", value=tenant or "")),
        tag("button", "Find", type="submit", id="find"),
        method="get",
        action="/console/instances",
        class_="filters",
    )
    rows = [
        (
            _instance_link(i),
            i.name,
            str(i.product),
            i.tenant_id,
            i.region,
            _topology(i),
            len(i.nodes),
        )
        for i in found
    ]
    query = {"q": q, "product": product_name, "tenant": tenant or ""}
    return Outcome(
        html=layout(
            visit,
            "Instances",
            search,
            table(
                ("id", "name", "product", "tenant", "region", "topology", "nodes"),
                rows,
                id="instances",
            ),
            pager("/console/instances", query, offset, PAGE_SIZE, total),
        )
    )


def _instance_link(value: Instance) -> Html:
    return link(f"/console/instances/{value.id}", value.id)


def _topology(value: Instance) -> str:
    if value.cluster:
        return "cluster"
    return "sentinel" if value.sentinels else "declared"


async def instance(visit: Visit, instance_id: str) -> Outcome:
    op, scope = visit.operator, visit.scope
    found = await op.instance(scope, instance_id)
    health = await op.health(found)
    try:
        accounts = await op.accounts(scope, found.id)
        account_note: Html | None = None
    except DomainError as error:
        accounts = []
        account_note = tag("p", "The accounts could not be read: ", error.message, class_="error")
    own, _ = await op.tasks(scope, tenant_id=None, instance_id=found.id, page=Page(limit=20))
    facts = tag(
        "dl",
        *(
            Html(tag("dt", k) + tag("dd", v))
            for k, v in (
                ("name", found.name or "—"),
                ("product", str(found.product)),
                ("tenant", found.tenant_id),
                ("region", found.region),
                ("topology", _topology(found) + (f" ({health.shape})" if health.shape else "")),
                ("engine version", found.engine_version or "—"),
                ("health", badge(health.status)),
            )
        ),
        class_="facts",
    )
    nodes = table(
        ("endpoint", "role", "shard"),
        [(n.endpoint, n.role, n.shard) for n in health.nodes],
        id="nodes",
    )
    account_rows = [
        (a.name, "yes" if a.enabled else "no", "yes" if a.password_free else "no", a.privilege)
        for a in accounts
    ]
    return Outcome(
        html=layout(
            visit,
            f"Instance {found.id}",
            facts,
            tag("p", health.detail, class_="error") if health.detail else "",
            tag("h2", "Nodes and roles"),
            nodes,
            tag("h2", "Accounts"),
            account_note or "",
            table(
                ("account", "enabled", "password-free", "privilege"), account_rows, id="accounts"
            ),
            tag("button", "Reset a password…", type="button", id="open-reset", class_="primary"),
            _reset_dialog(visit, found, [a.name for a in accounts]),
            tag("h2", "Its tasks"),
            _task_table(own, id="instance-tasks"),
        )
    )


def _reset_dialog(visit: Visit, found: Instance, accounts: list[str]) -> Html:
    """The reset form in a ``<dialog>``; ``console.js`` opens it, generates passwords from the
    product's rules (the ``data-`` attributes) and follows the task it queues."""
    policy = PASSWORD_POLICIES[found.product]
    classes = json.dumps(["".join(sorted(c.chars)) for c in policy.classes])
    options = [tag("option", name, value=name) for name in accounts]
    form = tag(
        "form",
        visit.csrf_field(),
        tag("h2", "Reset a password on ", found.id),
        field(
            "Account",
            tag("select", *options, name="account", id="reset-account")
            if options
            else tag("input", type="text", name="account", id="reset-account", required=True),
        ),
        field(
            "New password",
            tag(
                "input",
                type="password",
                name="password",
                id="reset-password",
                autocomplete="new-password",
                required=True,
                minlength=policy.min_length,
                maxlength=policy.max_length,
            ),
        ),
        tag("p", "Rules: ", policy.describe(), class_="hint"),
        tag(
            "p",
            tag("button", "Generate", type="button", id="generate"),
            " ",
            tag("code", "", id="generated", class_="generated"),
            class_="hint",
        ),
        tag("div", "", id="reset-progress", role="status", aria_live="polite"),
        tag(
            "div",
            tag("button", "Reset", type="submit", id="reset-submit", class_="primary"),
            tag("button", "Close", type="button", id="close-reset"),
            class_="actions",
        ),
        method="post",
        action=f"/console/instances/{found.id}/resets",
        id="reset-form",
        data_min=policy.min_length,
        data_max=policy.max_length,
        data_classes=classes,
        data_min_classes=policy.min_classes,
        data_forbidden=json.dumps(list(policy.forbidden_prefixes)),
    )
    return tag("dialog", form, id="reset-dialog")


async def reset(visit: Visit, instance_id: str) -> Outcome:
    wants_json = "application/json" in visit.request.headers.get("accept", "")
    found = await visit.operator.instance(visit.scope, instance_id)
    account = visit.form.get("account", "").strip()
    password = Secret(visit.form.get("password", ""))

    async def queue() -> Answer:
        queued = await visit.operator.reset(visit.scope, found.id, account, password)
        return Answer({"id": queued.id}, task_id=queued.id)

    try:
        answer = await visit.audited(
            "ResetPassword", f"instances/{found.id}", found.tenant_id, queue
        )
    except DomainError as error:
        if not wants_json:
            raise
        from keyturn.console.layout import status_of

        return Outcome(status=status_of(error), data={"error": error.message, "code": error.code})
    task_id = answer.task_id
    if wants_json:
        data = {
            "task": task_id,
            "poll": f"/console/tasks/{task_id}.json",
            "page": f"/console/tasks/{task_id}",
        }
        return Outcome(status=202, data=data)
    return redirect(f"/tasks/{task_id}")


# ---------------------------------------------------------------------- tasks


def _task_table(found: list[Task], **attributes: object) -> Html:
    rows = [
        (
            link(f"/console/tasks/{t.id}", t.id),
            link(f"/console/instances/{t.instance_id}", t.instance_id),
            t.account,
            str(t.kind),
            badge(str(t.state)),
            t.error_code,
            when(t.created_at),
        )
        for t in found
    ]
    return table(
        ("task", "instance", "account", "kind", "state", "code", "created"), rows, **attributes
    )


async def tasks(visit: Visit) -> Outcome:
    offset = _offset(visit)
    instance_id = visit.query.get("instance_id", "").strip()[:128] or None
    found, total = await visit.operator.tasks(
        visit.scope,
        tenant_id=None,
        instance_id=instance_id,
        page=Page(limit=PAGE_SIZE, offset=offset),
    )
    query = {"instance_id": instance_id or ""}
    return Outcome(
        html=layout(
            visit,
            "Tasks",
            _task_table(found, id="tasks"),
            pager("/console/tasks", query, offset, PAGE_SIZE, total),
        )
    )


def task_data(value: Task) -> dict[str, object]:
    return {
        "id": value.id,
        "state": str(value.state),
        "final": value.state.final,
        "message": value.message,
        "error_code": value.error_code,
        "verified_at": when(value.verified_at),
        "steps": [
            {"endpoint": s.endpoint, "phase": str(s.phase), "note": s.note} for s in value.steps
        ],
    }


async def task(visit: Visit, task_id: int, *, as_json: bool) -> Outcome:
    found = await visit.operator.task(visit.scope, task_id)
    if as_json:
        return Outcome(data=task_data(found))
    steps = table(
        ("endpoint", "phase", "note"),
        [(s.endpoint, s.phase, s.note) for s in found.steps],
        id="task-steps",
    )
    facts = tag(
        "dl",
        *(
            Html(tag("dt", k) + tag("dd", v))
            for k, v in (
                ("instance", link(f"/console/instances/{found.instance_id}", found.instance_id)),
                ("account", found.account),
                ("kind", str(found.kind)),
                ("state", tag("span", badge(str(found.state)), id="task-state")),
                ("message", found.message),
                ("created", when(found.created_at)),
                ("verified", tag("span", when(found.verified_at), id="task-verified")),
            )
        ),
        class_="facts",
    )
    live = tag(
        "div",
        "",
        id="task-live",
        data_poll=f"/console/tasks/{found.id}.json",
        data_final="1" if found.state.final else "0",
    )
    return Outcome(html=layout(visit, f"Task {found.id}", facts, live, tag("h2", "Steps"), steps))
