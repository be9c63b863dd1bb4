"""The console's pages about the fleet: the overview, instances (filter, search, paging on the
store's own paged queries, so a deep page stays fast at 100,000), one instance (nodes and roles
from a live discovery, accounts read from the engine, its tasks, the reset dialog) and tasks
(with the JSON that the task page and the dialog poll until the task is final).

Every call goes through ``Operator`` with the admin token's ``Scope``, as the admin API's; a
reset is audited as ``console:ResetPassword``. ``dispatch`` routes to these, to
``keyturn.console.instance_page`` and to ``keyturn.console.governance``.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

from keyturn.console import governance, instance_page
from keyturn.console.html import Html, badge, field, href, link, table, tag
from keyturn.console.layout import Outcome, instance_link, layout, pager, task_table, topology, when
from keyturn.core.errors import InvalidParameterValue
from keyturn.core.model import Product
from keyturn.core.store_ports import Page
from keyturn.core.tasks import Task

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
        return await instance_page.instance(visit, found[1])
    found = re.fullmatch(r"/instances/([^/]{1,128})/resets", path)
    if found and method == "POST":
        return await instance_page.reset(visit, found[1])
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
        (instance_link(i), str(i.product), badge(h.status), h.detail)
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
            task_table([*running, *failed], id="overview-tasks"),
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
            instance_link(i),
            i.name,
            str(i.product),
            i.tenant_id,
            i.region,
            topology(i),
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


# ---------------------------------------------------------------------- tasks


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
            task_table(found, id="tasks"),
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
