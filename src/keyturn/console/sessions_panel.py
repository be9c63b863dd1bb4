"""The instance page's "Who still uses the old password" panel: a GET form naming an account,
and that account's open sessions on every node (``Operator.sessions``: client address, name,
when opened, idle time, state), those opened before its last rotation marked *old*, *new* when
opened after, *?* where the engine cannot tell (MariaDB). Read-only: ending sessions is the
admin API's ``EndSessions`` or ``keyturn sessions --kill`` (both audited with the count). A
failure to read them shows why, on the page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from keyturn.console.html import Html, field, join, table, tag
from keyturn.core.errors import DomainError
from keyturn.core.model import Instance

if TYPE_CHECKING:
    from keyturn.console.app import Visit

#: The query parameter naming the account whose sessions are shown.
PARAMETER = "sessions"


def _when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


async def panel(visit: Visit, found: Instance, accounts: list[str]) -> Html:
    account = visit.query.get(PARAMETER, "").strip()[:200]
    options = [tag("option", n, value=n, selected=n == account) for n in accounts]
    form = tag(
        "form",
        field(
            "Account",
            tag("select", *options, name=PARAMETER, id="sessions-account")
            if options
            else tag("input", type="text", name=PARAMETER, id="sessions-account", value=account),
        ),
        tag("button", "Show sessions", type="submit", id="sessions-submit"),
        method="get",
        action=f"/console/instances/{found.id}",
        id="sessions-form",
    )
    parts: list[object] = [tag("h2", "Who still uses the old password"), form]
    if not account:
        return join(parts)
    try:
        report = await visit.operator.sessions(visit.scope, found.id, account)
    except DomainError as error:
        parts.append(tag("p", "The sessions could not be read: ", error.message, class_="error"))
        return join(parts)
    since = _when(report.since) if report.since else "unknown (no rotation recorded)"
    parts.append(
        tag(
            "p",
            f"{account}: last rotation {since}; {len(report.sessions)} sessions, ",
            f"{len(report.old)} may still use the old password.",
            id="sessions-summary",
        )
    )
    rows = [
        (
            v.session.node,
            v.session.id,
            v.session.client_addr,
            v.session.client_name,
            _when(v.session.connected_at),
            "" if v.session.idle_seconds is None else f"{v.session.idle_seconds:.0f}",
            v.session.state,
            report.explain(v),
        )
        for v in report.sessions
    ]
    headers = ("node", "id", "client", "name", "connected", "idle s", "state", "old?")
    parts.append(table(headers, rows, id="sessions"))
    for node, reason in report.unreachable:
        parts.append(tag("p", f"Not asked: {node}: {reason}", class_="error"))
    return join(parts)
