"""The console's page frame: the navigation every signed-in page shares, the sign-in and
message pages, what a page handler answers (``Outcome``), and the HTTP status of a domain error
(the admin API's mapping: request errors 400, refusals 403, not found 404, conflicts 409,
engines 502/503).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from keyturn.console.html import Html, badge, hidden, href, link, table, tag
from keyturn.core.errors import (
    AccessDenied,
    AuthError,
    Conflict,
    DomainError,
    EngineError,
    EngineUnavailable,
    NotFound,
    RequestError,
    RequestThrottled,
    StoreUnavailable,
)
from keyturn.core.model import Instance
from keyturn.core.tasks import Task

if TYPE_CHECKING:
    from keyturn.console.app import Visit

PREFIX = "/console"

NAV = (
    ("/", "Overview"),
    ("/instances", "Instances"),
    ("/tasks", "Tasks"),
    ("/audit", "Audit"),
    ("/policies", "Policies"),
    ("/keys", "Access keys"),
    ("/nodes", "Nodes"),
)

_STATUS: tuple[tuple[type[DomainError], int], ...] = (
    (RequestError, 400),
    (AccessDenied, 403),
    (AuthError, 401),
    (NotFound, 404),
    (Conflict, 409),
    (RequestThrottled, 429),
    (EngineUnavailable, 503),
    (EngineError, 502),
    (StoreUnavailable, 503),
)


def status_of(error: DomainError) -> int:
    return next((status for kind, status in _STATUS if isinstance(error, kind)), 500)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """A page handler's answer: a page, a JSON value or a redirect (``location``, 303)."""

    status: int = 200
    html: Html | None = None
    data: Any = None
    location: str = ""

    @property
    def content_type(self) -> str:
        if self.data is not None:
            return "application/json"
        return "text/html; charset=utf-8"

    def body(self) -> bytes:
        if self.data is not None:
            return json.dumps(self.data, ensure_ascii=True).encode()
        return (self.html or Html("")).encode()


def redirect(path: str) -> Outcome:
    return Outcome(status=303, location=PREFIX + path)


def _document(title: str, *body: object) -> Html:
    head = tag(
        "head",
        tag("meta", charset="utf-8"),
        tag("meta", name="viewport", content="width=device-width, initial-scale=1"),
        tag("title", title, " · keyturn"),
        tag("link", rel="stylesheet", href=PREFIX + "/static/console.css"),
        tag("script", src=PREFIX + "/static/console.js", defer=True),
    )
    return Html("<!doctype html>" + tag("html", head, tag("body", *body), lang="en"))


def layout(visit: Visit, title: str, *content: object) -> Html:
    nav = tag(
        "nav",
        tag("span", "keyturn", class_="brand"),
        *(link(PREFIX + path, label) for path, label in NAV),
        tag(
            "form",
            visit.csrf_field(),
            tag("span", "token ", visit.token.id, " · ", _scope_text(visit), class_="who"),
            tag("button", "Sign out", type="submit"),
            method="post",
            action=PREFIX + "/signout",
            class_="signout",
        ),
    )
    return _document(title, nav, tag("main", tag("h1", title), *content))


def _scope_text(visit: Visit) -> str:
    tenant = visit.token.tenant_id
    return "every tenant" if tenant is None else f"tenant {tenant}"


def sign_in_page(csrf: str, error: str, *, expired: bool) -> Html:
    notes: list[Html] = []
    if error:
        notes.append(tag("p", error, class_="error", id="signin-error"))
    if expired:
        notes.append(
            tag("p", "Your session has ended: sign in again.", class_="error", id="signin-expired")
        )
    form = tag(
        "form",
        hidden("csrf", csrf),
        tag(
            "label",
            tag("span", "Admin token"),
            tag(
                "input",
                type="password",
                name="token",
                id="token",
                autocomplete="off",
                required=True,
            ),
        ),
        tag("button", "Sign in", type="submit", id="signin"),
        method="post",
        action=PREFIX + "/signin",
        class_="signin",
    )
    hint = tag(
        "p", "Make one with ", tag("code", "keyturn admin-tokens create"), ".", class_="hint"
    )
    return _document(
        "Sign in", tag("main", tag("h1", "keyturn console"), *notes, form, hint, class_="narrow")
    )


def message_page(title: str, text: str) -> Html:
    back = link(PREFIX + "/", "Back to the console")
    return _document(
        title, tag("main", tag("h1", title), tag("p", text, class_="error"), back, class_="narrow")
    )


def pager(path: str, query: dict[str, str], offset: int, limit: int, total: int) -> Html:
    """Previous / next links that keep the page's filters."""
    shown = f"{offset + 1 if total else 0}-{min(offset + limit, total)} of {total:,}"
    parts: list[object] = [tag("span", shown, class_="count")]
    if offset > 0:
        parts.append(
            link(href(path, {**query, "offset": max(0, offset - limit)}), "« previous", rel="prev")
        )
    if offset + limit < total:
        parts.append(
            link(
                href(path, {**query, "offset": offset + limit}),
                "next »",
                rel="next",
                id="next-page",
            )
        )
    return tag("div", *parts, class_="pager")


def when(moment: object) -> str:
    if isinstance(moment, datetime):
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return ""


# ---------------------------------------------------------------------- shared widgets


def instance_link(value: Instance) -> Html:
    return link(f"/console/instances/{value.id}", value.id)


def topology(value: Instance) -> str:
    if value.cluster:
        return "cluster"
    return "sentinel" if value.sentinels else "declared"


def task_table(found: list[Task], **attributes: object) -> Html:
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
