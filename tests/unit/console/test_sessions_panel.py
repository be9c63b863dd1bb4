"""Unit tests of the instance page's sessions panel (``keyturn.console.sessions_panel``): without
an account named it is only the form; with one it lists the sessions with their client, name
and old/new/unknown mark, escaped; a failure to read them is shown, not raised."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from keyturn.console.sessions_panel import panel
from keyturn.core.engine_ports import Session
from keyturn.core.errors import EngineUnavailable
from keyturn.service.sessions import SessionReport, SessionView
from tests.support.fakes import fake_instance

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass
class Operator:
    fail: bool = False
    asked: list[str] = field(default_factory=list)

    async def sessions(self, scope: object, instance_id: str, account: str) -> SessionReport:
        self.asked.append(account)
        if self.fail:
            raise EngineUnavailable("127.0.0.1:6379 is not reachable")
        old = Session(
            node="127.0.0.1:6379", id="5", account=account, client_addr="10.0.0.7:51000",
            client_name="<billing>", connected_at=T0, idle_seconds=12.0, state="get",
        )  # fmt: skip
        new = Session(node="127.0.0.1:6379", id="6", account=account)
        return SessionReport(
            instance_id=instance_id,
            account=account,
            since=T0,
            sessions=(SessionView(session=old, old=True), SessionView(session=new, old=None)),
        )


@dataclass
class Visit:
    query: dict[str, str]
    operator: Operator
    scope: object = None


async def test_without_an_account_only_the_form() -> None:
    op = Operator()
    html = await panel(cast(Any, Visit({}, op)), fake_instance(), ["app", "default"])
    assert 'id="sessions-form"' in html and 'id="sessions"' not in html and not op.asked


async def test_the_sessions_of_the_account_named() -> None:
    op = Operator()
    html = await panel(cast(Any, Visit({"sessions": "app"}, op)), fake_instance(), ["app"])
    assert op.asked == ["app"]
    assert "10.0.0.7:51000" in html and "&lt;billing&gt;" in html and "<billing>" not in html
    assert ">old<" in html and ">?<" in html
    assert "2 sessions, 2 may still use the old password" in html


async def test_a_failure_is_shown() -> None:
    html = await panel(
        cast(Any, Visit({"sessions": "app"}, Operator(fail=True))), fake_instance(), []
    )
    assert "could not be read" in html and "not reachable" in html
