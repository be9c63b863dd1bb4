"""One instance's console page: its facts, nodes and roles from a live discovery (bounded by
the operator's probe timeout), accounts read from the engine, its tasks, and the reset dialog:
a form in a ``<dialog>`` whose ``data-`` attributes carry the product's password rules
(``core/passwords.py``), from which ``static/console.js`` generates a password in the browser;
posted, the reset is queued through ``Operator.reset`` (the product's rules checked again),
audited as ``console:ResetPassword``, and the dialog follows the task's JSON until it is final.
Below, the sessions panel (``keyturn.console.sessions_panel``) shows who still uses an
account's old password.

The password a form posts goes straight into a ``Secret``: no page or JSON answer ever holds
one, and a refused reset answers only why.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from keyturn.console import sessions_panel
from keyturn.console.html import Html, badge, field, table, tag
from keyturn.console.layout import Outcome, layout, redirect, status_of, task_table, topology
from keyturn.core.errors import DomainError
from keyturn.core.model import Instance
from keyturn.core.secrets import Secret
from keyturn.core.store_ports import Page
from keyturn.service.context import Answer
from keyturn.service.operator import PASSWORD_POLICIES

if TYPE_CHECKING:
    from keyturn.console.app import Visit


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
                ("topology", topology(found) + (f" ({health.shape})" if health.shape else "")),
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
            await sessions_panel.panel(visit, found, [a.name for a in accounts]),
            tag("h2", "Its tasks"),
            task_table(own, id="instance-tasks"),
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
