"""The admin API against a real ``keyturn serve`` and a real redis-server: an admin token made
with the CLI lists instances, resets a password (the task polled to ``succeed``, the new
password logs in), finds the reset in the audit log and the chain intact; a tenant's token sees
nothing of another tenant's (the very 404 of an id nobody has); a revoked token is refused
within a second; a request without a token is refused before its body is read; and every
route answers what the OpenAPI document declares (``AdminClient`` validates every answer)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from keyturn.api.spec import ROUTES
from keyturn.core.model import EngineKind
from keyturn.dialects._wire import MAX_BODY_BYTES
from tests.support.admin_api import AdminClient, create_token, problem_shape, token_id
from tests.support.app_sessions import open_app_session
from tests.support.cli import audit_cli, keyturn_cli
from tests.support.keyturn_server import KEY_ID, OTHER_KEY_ID, OTHER_TENANT, TENANT, KeyturnServer
from tests.support.logins import can_login
from tests.support.passwords import leaked, new_instance_id, new_password
from tests.support.redis_admin import add_user
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.engine
#: Generous: a reset on a loaded machine takes well under a second.
TASK_DEADLINE = 30.0


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    server = RedisServer(password=new_password()).start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def keyturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyturnServer]:
    server = KeyturnServer(tmp_path_factory.mktemp("admin-api"))
    server.start()
    yield server
    if server.process is not None:
        server.stop()


@pytest.fixture(scope="module")
def instance(keyturn: KeyturnServer, redis: RedisServer) -> str:
    instance_id = new_instance_id()
    keyturn.add_instance(instance_id, [redis.admin_url()], name="orders")
    return instance_id


@pytest.fixture(scope="module")
def admin(keyturn: KeyturnServer) -> AdminClient:
    return AdminClient(keyturn.endpoint, create_token(keyturn, "--name", "e2e"))


def wait_task(client: AdminClient, task_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + TASK_DEADLINE
    while True:
        task: dict[str, Any] = client.call("GET", f"/tasks/{task_id}").json()
        if task["state"] in ("succeed", "failed") or time.monotonic() > deadline:
            return task
        time.sleep(0.1)


def test_reset_through_the_admin_api(
    keyturn: KeyturnServer, redis: RedisServer, instance: str, admin: AdminClient
) -> None:
    listed = admin.call("GET", "/instances", params={"tenant": TENANT}).json()
    assert instance in [i["id"] for i in listed["items"]]
    detail = admin.call("GET", f"/instances/{instance}").json()
    assert detail["health"]["status"] == "ok"
    assert [n["role"] for n in detail["health"]["nodes"]] == ["primary"]
    accounts = admin.call("GET", f"/instances/{instance}/accounts").json()["items"]
    assert "default" in [a["name"] for a in accounts]

    password = new_password()
    answer = admin.call(
        "POST", f"/instances/{instance}/resets", json={"account": "default", "password": password}
    )
    assert answer.status_code == 202
    assert password not in answer.text
    task = answer.json()
    assert answer.headers["location"] == f"/admin/v1/tasks/{task['id']}"
    done = wait_task(admin, task["id"])
    assert done["state"] == "succeed", done
    assert [s["phase"] for s in done["steps"]] == ["verified"]
    assert can_login(redis.port, password)
    redis.password = password  # the fixture's later calls log in with it

    found = admin.call(
        "GET", "/audit", params={"action": "admin:ResetPassword", "tenant": TENANT}
    ).json()["items"]
    outcomes = {r["outcome"]: r for r in found if r["task_id"] in ("", str(task["id"]))}
    assert {"started", "succeeded"} <= set(outcomes)
    record = outcomes["succeeded"]
    assert record["task_id"] == str(task["id"])
    assert record["key_id"] == token_id(keyturn, admin.token or "")
    assert record["vendor"] == "admin" and record["tenant"] == TENANT
    chain = admin.call("GET", "/audit/chain").json()
    assert chain["intact"] and chain["records"] >= 2
    assert audit_cli(keyturn, "verify").returncode == 0
    assert leaked(keyturn, [password, admin.token or ""]) == []


def test_a_rejected_password_changes_nothing(instance: str, admin: AdminClient) -> None:
    answer = admin.call(
        "POST", f"/instances/{instance}/resets", json={"account": "default", "password": "short"}
    )
    assert answer.status_code == 400
    assert answer.json()["code"] == "PasswordLengthViolation"


def test_a_tenant_token_sees_nothing_of_another_tenant(
    keyturn: KeyturnServer, instance: str, admin: AdminClient
) -> None:
    # A task of TENANT's to look for.
    task = admin.call(
        "POST",
        f"/instances/{instance}/resets",
        json={"account": "nobody-here", "password": new_password()},
    )
    assert task.status_code in (202, 404), task.text
    tasks = admin.call("GET", "/tasks", params={"tenant": TENANT}).json()["items"]
    assert tasks, "the reset test made a task"
    task_id = tasks[0]["id"]

    other = admin.with_token(create_token(keyturn, "--tenant", OTHER_TENANT))
    pairs = [
        ("GET", f"/instances/{instance}", "/instances/crs-nobodyhas0"),
        ("GET", f"/instances/{instance}/accounts", "/instances/crs-nobodyhas0/accounts"),
        ("GET", f"/tasks/{task_id}", "/tasks/1234567"),
        ("GET", f"/access-keys/{KEY_ID}", "/access-keys/AKIDnobodyhasthis0000"),
        ("DELETE", f"/access-keys/{KEY_ID}", "/access-keys/AKIDnobodyhasthis0000"),
    ]
    for method, theirs, nobodys in pairs:
        refused, missing = other.call(method, theirs), other.call(method, nobodys)
        assert refused.status_code == 404, (theirs, refused.text)
        assert problem_shape(refused) == problem_shape(missing), theirs
    reset = {"account": "default", "password": new_password()}
    refused_reset = other.call("POST", f"/instances/{instance}/resets", json=reset)
    missing_reset = other.call("POST", "/instances/crs-nobodyhas0/resets", json=reset)
    assert refused_reset.status_code == 404
    assert problem_shape(refused_reset) == problem_shape(missing_reset)
    their_policy = other.call("GET", f"/policies/{TENANT}/p1")
    nobodys_policy = other.call("GET", "/policies/1399999999/p1")
    assert their_policy.status_code == nobodys_policy.status_code == 404

    # Listings show only the token's own tenant, whatever is asked for.
    assert [t["id"] for t in other.call("GET", "/tenants").json()["items"]] == [OTHER_TENANT]
    assert other.call("GET", "/instances", params={"tenant": TENANT}).json()["items"] == []
    assert all(i["tenant"] == OTHER_TENANT for i in other.call("GET", "/instances").json()["items"])
    assert other.call("GET", "/tasks", params={"tenant": TENANT}).json()["items"] == []
    assert other.call("GET", "/tasks").json()["items"] == []
    keys = other.call("GET", "/access-keys").json()["items"]
    assert [k["id"] for k in keys] == [OTHER_KEY_ID]
    audit = other.call("GET", "/audit", params={"limit": "500"}).json()["items"]
    assert audit and {r["tenant"] for r in audit} == {OTHER_TENANT}
    nodes = other.call("GET", "/nodes").json()
    assert all(t["tenant"] == OTHER_TENANT for n in nodes["items"] for t in n["tasks"])
    # Each of those calls is audited under the token's id and tenant, with its outcome.
    records = admin.call(
        "GET", "/audit", params={"action": "admin:GetInstance", "tenant": OTHER_TENANT}
    ).json()["items"]
    mine = [r for r in records if r["key_id"] == token_id(keyturn, other.token or "")]
    assert {(r["outcome"], r["error_code"]) for r in mine} == {("failed", "InstanceNotFound")}
    # What needs every tenant is refused.
    created = other.call("POST", "/tenants", json={"id": "1300000099"})
    assert created.status_code == 403 and created.json()["code"] == "AccessDenied"
    assert other.call("DELETE", f"/tenants/{TENANT}").status_code == 403
    denied = admin.call("GET", "/audit", params={"action": "admin:CreateTenant"}).json()["items"]
    # Refused before it started: no "started" record.
    assert [r["outcome"] for r in denied if r["tenant"] == OTHER_TENANT] == ["denied"]
    made = other.call("POST", "/access-keys", json={"tenant": TENANT})
    assert made.status_code == 404


def test_a_revoked_token_is_refused_within_a_second(keyturn: KeyturnServer) -> None:
    token = create_token(keyturn, "--name", "short-lived")
    client = AdminClient(keyturn.endpoint, token)
    assert client.call("GET", "/tenants").status_code == 200
    done = keyturn_cli(keyturn.data_dir, "admin-tokens", "revoke", token_id(keyturn, token))
    assert done.returncode == 0, done.stderr
    time.sleep(1.0)
    refused = client.call("GET", "/tenants")
    assert refused.status_code == 401 and refused.json()["code"] == "MissingAuthorization"
    listed = keyturn_cli(keyturn.data_dir, "admin-tokens", "list").stdout
    assert token_id(keyturn, token) in listed and "revoked" in listed
    assert token not in listed


def test_no_token_is_refused_before_the_body_is_read(keyturn: KeyturnServer) -> None:
    client = AdminClient(keyturn.endpoint, None)
    for authorization in (
        None,
        "Bearer kt_not-a-token",
        "Basic a2V5dHVybg==",
        "Bearer " + "x" * 5000,
    ):
        headers = {} if authorization is None else {"authorization": authorization}
        answer = client.call("GET", "/instances", headers=headers)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith("Bearer")
    # Headers promise a 1 MB body that never comes: the 401 is sent anyway.
    host, port = keyturn.endpoint.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /admin/v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000\r\n\r\n{"
        )
        head = sock.recv(65536).decode("latin-1")
    assert head.startswith("HTTP/1.1 401"), head


async def test_sessions_through_the_admin_api(
    redis: RedisServer, instance: str, admin: AdminClient
) -> None:
    """Who still uses the old password: a session opened before the instant is listed as old
    with its address and name, one opened after as new; ending ends exactly the old one, and
    the audit log has the kill with its count."""
    await add_user(redis, "sessapp", "on", ">Sess-app-pw-1", "~*", "+@all")
    before = open_app_session(EngineKind.REDIS, redis.port, "sessapp", "Sess-app-pw-1", "legacy")
    time.sleep(1.5)
    instant = datetime.now(UTC).isoformat()
    time.sleep(1.5)
    after = open_app_session(EngineKind.REDIS, redis.port, "sessapp", "Sess-app-pw-1", "fresh")
    try:
        path = f"/instances/{instance}/sessions"
        found = admin.call("GET", path, params={"account": "sessapp", "since": instant}).json()
        by_name = {s["client_name"]: s for s in found["items"]}
        assert by_name["legacy"]["old"] is True and by_name["fresh"]["old"] is False
        assert by_name["legacy"]["client_addr"] == before.addr and found["old"] == 1
        body = {"account": "sessapp", "since": instant}
        ended = admin.call("POST", f"{path}/end", json=body).json()
        assert ended["ended"] == 1
        assert not before.alive() and after.alive()
        records = admin.call("GET", "/audit", params={"action": "EndSessions"}).json()["items"]
        assert any("sessions-ended/1" in json.dumps(r) for r in records)
    finally:
        before.close()
        after.close()


def test_every_route_answers_as_documented(
    keyturn: KeyturnServer, instance: str, admin: AdminClient, tmp_path: Path
) -> None:
    """Every operation of the document is called with a token of every tenant, its answers
    validated by ``AdminClient``; the document is the one ``keyturn.api.spec`` declares."""
    call = admin.call
    assert call("GET", "/openapi.json").status_code == 200
    assert call("POST", "/tenants", json={"id": "1300000077", "name": "made"}).status_code == 201
    assert call("POST", "/tenants", json={"id": "1300000077"}).status_code == 409
    call("GET", "/tenants")
    too_large = call("POST", "/tenants", content=b" " * (MAX_BODY_BYTES + 1))
    assert too_large.status_code == 413 and too_large.json()["code"] == "RequestTooLarge"
    for body in (b"{", b'{"id": 1}', b'{"id": "1", "extra": true}', b"[]"):
        assert call("POST", "/tenants", content=body).status_code == 400, body
    document = {"version": "2.0", "statement": [
        {"effect": "allow", "action": ["redis:DescribeInstances"], "resource": ["*"]}
    ]}  # fmt: skip
    put = call("PUT", "/policies/1300000077/readers", json={"document": document})
    assert put.status_code == 200, put.text
    assert call("GET", "/policies/1300000077/readers").json()["name"] == "readers"
    assert call("GET", "/policies", params={"tenant": "1300000077"}).json()["items"]
    created = call("POST", "/access-keys", json={"tenant": "1300000077", "policies": ["readers"]})
    assert created.status_code == 201
    key = created.json()
    assert key["secret"] and not key["administrator"]
    listed = call("GET", "/access-keys", params={"tenant": "1300000077"}).json()["items"]
    assert "secret" not in json.dumps(listed)
    assert call("GET", f"/access-keys/{key['id']}").json()["policies"]["names"] == ["readers"]
    check = {"key_id": key["id"], "action": "redis:DescribeInstances", "resource": "*"}
    assert call("POST", "/policies/check", json=check).json()["allowed"] is True
    check["action"] = "redis:ResetPassword"
    decided = call("POST", "/policies/check", json=check).json()
    assert decided["allowed"] is False and decided["reason"]
    assert call("DELETE", "/policies/1300000077/readers").status_code == 409
    assert call("DELETE", f"/access-keys/{key['id']}/policies/readers").status_code == 200
    assert call("PUT", f"/access-keys/{key['id']}/policies/readers").status_code == 200
    call("DELETE", f"/access-keys/{key['id']}/policies/readers")
    assert call("DELETE", "/policies/1300000077/readers").status_code == 204
    assert (
        call("PATCH", f"/access-keys/{key['id']}", json={"enabled": False}).json()["enabled"]
        is False
    )
    assert call("PATCH", f"/access-keys/{key['id']}", json={"enabled": True}).json()["enabled"]
    assert call("DELETE", f"/access-keys/{key['id']}").status_code == 204
    assert call("DELETE", "/tenants/1300000077").status_code == 409  # it still has a key
    call("POST", "/tenants", json={"id": "1300000078"})
    assert call("DELETE", "/tenants/1300000078").status_code == 204
    page = call("GET", "/instances", params={"limit": "1", "offset": "0"}).json()
    assert len(page["items"]) == 1 and page["total"] >= 1
    call("GET", "/instances", params={"id": instance, "product": "tencent-redis"})
    call("GET", f"/instances/{instance}")
    call("GET", f"/instances/{instance}/accounts")
    call("GET", f"/instances/{instance}/sessions", params={"account": "default"})
    assert call("GET", f"/instances/{instance}/sessions").status_code == 400  # no account
    nobody = {"account": "nobody-here", "since": "2000-01-01T00:00:00Z"}
    assert call("POST", f"/instances/{instance}/sessions/end", json=nobody).json()["ended"] == 0
    tasks = call("GET", "/tasks", params={"instance_id": instance}).json()
    for task in tasks["items"]:
        call("GET", f"/tasks/{task['id']}")
    first = call("GET", "/audit", params={"limit": "2"}).json()
    assert first["next_before"] is not None
    older = call("GET", "/audit", params={"limit": "2", "before": str(first["next_before"])})
    assert max(r["seq"] for r in older.json()["items"]) < first["next_before"] + 1
    call("GET", "/audit/chain")
    call("GET", "/nodes")
    _fleet_routes(admin, instance)
    missing = admin.operation_ids() - admin.seen
    assert not missing, f"operations never answered: {sorted(missing)}"
    assert {r.name for r in ROUTES} == admin.operation_ids()


def _fleet_routes(admin: AdminClient, instance: str) -> None:
    """A fleet job whose one target cannot change (its account does not exist): it pauses at
    its threshold; resume, pause and abort steer it; nothing is rotated."""
    call = admin.call
    body = {"tenant": TENANT, "instances": instance, "accounts": ["redis:kt_nobody"]}
    started = call("POST", "/fleet-jobs", json=body)
    assert started.status_code == 202, started.text
    job_id = started.json()["id"]
    assert started.json()["counts"]["total"] == 1
    assert call("POST", "/fleet-jobs", json={**body, "canary": 0}).status_code == 400
    # Labels select too: the instance has none, so a label leaves nothing to rotate.
    unlabelled = call("POST", "/fleet-jobs", json={**body, "labels": ["tier=gold"]})
    assert unlabelled.status_code == 400 and "no instance matches" in unlabelled.text
    assert call("POST", "/fleet-jobs", json={**body, "labels": ["tier"]}).status_code == 400
    assert call("GET", "/fleet-jobs/fj-000000000000").status_code == 404

    def state() -> str:
        found: str = call("GET", f"/fleet-jobs/{job_id}").json()["state"]
        return found

    deadline = time.monotonic() + TASK_DEADLINE
    while state() != "paused":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    target = call("GET", f"/fleet-jobs/{job_id}/targets").json()["items"][0]
    assert target["state"] == "failed" and target["task_id"] is None, target
    assert "password" not in json.dumps(target)
    assert call("GET", "/fleet-jobs", params={"tenant": TENANT}).json()["items"]
    # A resumed job runs until a node claims it (within a second): pause it in between.
    for _ in range(5):
        assert call("POST", f"/fleet-jobs/{job_id}/resume").json()["state"] == "running"
        if call("POST", f"/fleet-jobs/{job_id}/pause").status_code == 200:
            break
    assert call("POST", f"/fleet-jobs/{job_id}/abort").json()["state"] == "aborted"
    assert call("POST", f"/fleet-jobs/{job_id}/resume").status_code == 409
