"""``SqlEngine._verified``: how a SQL node's check orders its standby question and its fresh
login (fakes only; the engines' contract suites prove it on real servers)."""

from __future__ import annotations

import asyncio

import pytest

from keyturn.core.errors import EngineUnavailable, VerificationFailed
from keyturn.core.model import EngineKind, Node, NodeRole, parse_node_url
from keyturn.core.secrets import Secret
from keyturn.engines.sql_engine import SqlAdmin, SqlEngine


class Recorded(SqlEngine[SqlAdmin]):
    """Logins answer as told and are recorded in order with the other steps."""

    def __init__(self, *, login_ok: bool) -> None:
        super().__init__(timeout=1.0, grace=0.0, classify=lambda *_: None, refused=lambda _: False)
        self.login_ok = login_ok
        self.steps: list[str] = []

    async def _login(self, node: Node, account: str, password: Secret) -> None:
        self.steps.append("login")
        await asyncio.sleep(0)
        if not self.login_ok:
            raise VerificationFailed("refused")

    async def check(self, node: Node, *, standby: bool | Exception) -> None:
        async def ask() -> bool:
            self.steps.append("standby?")
            await asyncio.sleep(0.01)
            if isinstance(standby, Exception):
                raise standby
            return standby

        async def replay() -> None:
            self.steps.append("replay")

        await self._verified(node, "app", Secret("New-pw-1"), standby=ask, replay=replay)


def node(role: NodeRole) -> Node:
    url = "postgresql://postgres:pw@127.0.0.1:5999/postgres"
    address = parse_node_url(url, EngineKind.POSTGRES)
    return Node(instance_id="postgres-verify01", ordinal=0, address=address, role=role)


async def test_a_discovered_primary_logs_in_while_it_is_asked() -> None:
    engine = Recorded(login_ok=True)
    await engine.check(node(NodeRole.PRIMARY), standby=False)
    assert sorted(engine.steps) == ["login", "standby?"]
    engine = Recorded(login_ok=False)
    with pytest.raises(VerificationFailed):
        await engine.check(node(NodeRole.PRIMARY), standby=False)


async def test_other_nodes_are_asked_first() -> None:
    engine = Recorded(login_ok=True)
    await engine.check(node(NodeRole.REPLICA), standby=True)
    assert engine.steps == ["standby?", "replay"]
    engine = Recorded(login_ok=True)
    await engine.check(node(NodeRole.MEMBER), standby=False)
    assert engine.steps == ["standby?", "login"]


async def test_a_primary_turned_standby_is_proven_by_its_login_or_its_replay() -> None:
    engine = Recorded(login_ok=True)
    await engine.check(node(NodeRole.PRIMARY), standby=True)
    assert "replay" not in engine.steps
    engine = Recorded(login_ok=False)
    await engine.check(node(NodeRole.PRIMARY), standby=True)
    assert engine.steps[-1] == "replay"


async def test_a_failed_question_fails_the_check() -> None:
    engine = Recorded(login_ok=True)
    with pytest.raises(EngineUnavailable):
        await engine.check(node(NodeRole.PRIMARY), standby=EngineUnavailable("down"))
