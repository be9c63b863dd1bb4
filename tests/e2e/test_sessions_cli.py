"""``keyturn sessions`` as an operator runs it, on a real Redis and a real PostgreSQL.

An application session opened before an instant is listed (``--json``) with its address and
name as *old*, one opened after as *new*; ``--kill`` ends exactly the old one (the count is 1,
the new session keeps working), and the audit log records the kill with its count. Without a
rotation recorded and without ``--since`` nothing is known to be old or new. A name that is not
an instance is exit status 2.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from keyturn.core.model import EngineKind
from tests.support.app_sessions import open_app_session
from tests.support.cli import keyturn_cli as keyturn
from tests.support.redis_admin import add_user
from tests.support.sql_admin import create_role

pytestmark = pytest.mark.engine

TENANT, APP_PW = "1300000009", "App-sessions-pw-1"
#: Redis reports a client's age in whole seconds: the instant sits well inside a gap.
GAP = 1.5


def register(data: Path, kind: str, server: Any) -> tuple[str, EngineKind]:
    assert keyturn(data, "tenants", "add", TENANT, "--name", "ops").returncode == 0
    if kind == "redis":
        instance, product, engine = "crs-sess0001", "tencent-redis", EngineKind.REDIS
        url = f"redis://default:${{KT_NODE_PW}}@127.0.0.1:{server.port}"
    else:
        instance, product, engine = "postgres-sess0001", "tencent-postgres", EngineKind.POSTGRES
        url = f"postgresql://postgres:${{KT_NODE_PW}}@127.0.0.1:{server.port}/postgres"
    added = keyturn(
        data,
        *("instances", "add", "--id", instance, "--tenant", TENANT, "--product", product),
        *("--region", "ap-guangzhou", "--node", url),
        env={"KT_NODE_PW": server.password},
    )
    assert added.returncode == 0, added.stderr
    return instance, engine


def listed(data: Path, instance: str, *args: str) -> dict[str, Any]:
    done = keyturn(data, "sessions", instance, "app", "--json", *args)
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


@pytest.mark.parametrize("kind", ["redis", "postgres"])
async def test_sessions_cli_lists_and_ends_the_old_sessions(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    server = request.getfixturevalue("redis_server" if kind == "redis" else "postgres_server")
    if kind == "redis":
        await add_user(server, "app", "on", f">{APP_PW}", "~*", "+@all")
    else:
        create_role(server, "app", APP_PW)
    data = tmp_path / "data"
    instance, engine = register(data, kind, server)

    before = open_app_session(engine, server.port, "app", APP_PW, "legacy-worker")
    time.sleep(GAP)
    instant = datetime.now(UTC).isoformat()
    time.sleep(GAP)
    after = open_app_session(engine, server.port, "app", APP_PW, "new-worker")
    try:
        unknown = listed(data, instance)
        assert unknown["since"] is None
        assert {s["old"] for s in unknown["sessions"]} == {None}

        report = listed(data, instance, "--since", instant)
        by_name = {s["client_name"]: s for s in report["sessions"]}
        assert set(by_name) == {"legacy-worker", "new-worker"}
        assert by_name["legacy-worker"]["old"] is True
        assert by_name["legacy-worker"]["client_addr"] == before.addr
        assert by_name["new-worker"]["old"] is False
        assert report["old"] == 1

        table = keyturn(data, "sessions", instance, "app", "--since", instant)
        assert table.returncode == 0 and "legacy-worker" in table.stdout, table.stderr

        killed = listed(data, instance, "--since", instant, "--kill")
        assert killed["ended"] == 1
        assert not before.alive() and after.alive()
        left = listed(data, instance, "--since", instant)
        assert [s["client_name"] for s in left["sessions"]] == ["new-worker"]

        tail = keyturn(data, "audit", "tail", "--json")
        assert tail.returncode == 0, tail.stderr
        events = [json.loads(line) for line in tail.stdout.splitlines()]
        ends = [e for e in events if "EndSessions" in json.dumps(e)]
        assert len(ends) == 1 and "sessions-ended/1" in json.dumps(ends[0])
    finally:
        before.close()
        after.close()

    missing = keyturn(data, "sessions", "crs-nothere1", "app")
    assert missing.returncode == 2 and "not registered" in missing.stderr
