"""The audit log as an operator meets it: after calls through the official Tencent and Huawei
SDKs against a real server, ``keyturn audit tail|search`` show each call (vendor and neutral
action, resource, outcome, error code, request id, task id) and never a password; editing the
database file (even re-hashing it without the master key) makes ``keyturn audit verify`` exit
1 naming the record; records whose client-chosen fields hold rich markup, ANSI escapes or bidi
controls print as inert text; and a server whose audit log cannot be written refuses resets
with the vendor's internal error and leaves the engine's password alone, while reads keep
working."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import uuid
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.redis.v20180412 import models

from keyturn.bootstrap import open_admin_store
from keyturn.config import load_settings
from keyturn.core.audit import AuditEvent, AuditOutcome
from keyturn.core.model import Product
from keyturn.store.audit_keying import open_audit_log
from keyturn.store.opening import DB_FILE
from tests.support.cli import audit_cli, audit_records
from tests.support.huawei_sdk import dcs_client, reset_password
from tests.support.keyturn_server import (
    HW_AK,
    HW_PROJECT,
    HW_SK,
    KEY_ID,
    KEY_SECRET,
    OTHER_KEY_SECRET,
    TENANT,
    KeyturnServer,
)
from tests.support.logins import can_login
from tests.support.passwords import leaked, new_instance_id, new_password
from tests.support.sdk import redis_sdk, reset, wait_task

pytestmark = pytest.mark.engine


def sdk_error(call: Callable[[], object]) -> TencentCloudSDKException:
    with pytest.raises(TencentCloudSDKException) as caught:
        call()
    return caught.value


def test_tail_search_and_verify(
    make_server: Callable[..., KeyturnServer],
    redis_server_factory: Callable[..., Any],
) -> None:
    server = make_server()
    server.start()
    tencent_redis, huawei_redis = redis_server_factory(), redis_server_factory()
    instance_id = new_instance_id()
    server.add_instance(instance_id, [tencent_redis.admin_url()])
    hw_instance = str(uuid.uuid4())
    server.add_instance(
        hw_instance,
        [huawei_redis.admin_url()],
        product=Product.HUAWEI_DCS,
        tenant=HW_PROJECT,
        region="cn-north-4",
    )
    client = redis_sdk(server.endpoint)

    # A reset that succeeds, one the password rules refuse, and one that does not authenticate.
    new = new_password()
    request = models.ResetPasswordRequest()
    request.InstanceId, request.Password = instance_id, new
    answer = client.ResetPassword(request)
    assert wait_task(client, answer.TaskId).Status == "succeed"
    weak = new_password()[:6]
    refused = sdk_error(lambda: reset(client, instance_id, Password=weak))
    assert refused.get_code() == "InvalidParameterValue.PasswordRuleError"
    forged = redis_sdk(server.endpoint, secret="not-the-secret-0123456789")
    unsigned = sdk_error(lambda: forged.DescribeInstances(models.DescribeInstancesRequest()))
    assert unsigned.get_code() == "AuthFailure.SignatureFailure"
    # And a reset through the official Huawei SDK.
    hw_new = new_password()
    reset_password(dcs_client(server.endpoint), hw_instance, new_password=hw_new)
    assert can_login(huawei_redis.port, hw_new)

    tail = audit_records(server, "tail", "-n", "50")
    outputs = [json.dumps(tail)]
    resource = f"qcs::redis:ap-guangzhou:uin/{TENANT}:instance/{instance_id}"
    mine = [r for r in tail if r["request_id"] == answer.RequestId]
    assert [(r["outcome"], r["task_id"]) for r in mine] == [
        ("started", ""),
        ("succeeded", str(answer.TaskId)),
    ]
    for record in mine:
        assert record["vendor"] == "tencent"
        assert record["action"] == "redis:ResetPassword"
        assert record["neutral_action"] == "reset_password"
        assert record["resource"] == resource
        assert (record["tenant_id"], record["key_id"]) == (TENANT, KEY_ID)
        assert record["source_ip"] == "127.0.0.1"
        assert record["error_code"] == ""
    # The password rules are the reset's to check: it started, then failed.
    failed = [r for r in tail if r["request_id"] == refused.get_request_id()]
    assert [(r["outcome"], r["error_code"]) for r in failed] == [
        ("started", ""),
        ("failed", "InvalidParameterValue.PasswordRuleError"),
    ]
    [anonymous] = [r for r in tail if r["request_id"] == unsigned.get_request_id()]
    assert (anonymous["tenant_id"], anonymous["key_id"]) == ("", KEY_ID)
    assert (anonymous["outcome"], anonymous["error_code"]) == (
        "denied",
        "AuthFailure.SignatureFailure",
    )
    assert anonymous["action"] == "redis:DescribeInstances"
    polled = [r for r in tail if r["action"] == "redis:DescribeTaskInfo"]
    assert polled and all(r["outcome"] == "succeeded" for r in polled)
    huawei = [r for r in tail if r["vendor"] == "huawei"]
    assert [r["outcome"] for r in huawei] == ["started", "succeeded"]
    for record in huawei:
        assert (record["tenant_id"], record["key_id"]) == (HW_PROJECT, HW_AK)
        assert record["neutral_action"] == "reset_password"
        assert record["action"].startswith("dcs:") and hw_instance in record["resource"]
    assert [r["seq"] for r in tail] == list(range(1, len(tail) + 1))

    # Searches.
    by_request = audit_records(server, "search", "--request-id", answer.RequestId)
    assert [r["seq"] for r in by_request] == [r["seq"] for r in mine]
    denied = audit_records(server, "search", "--outcome", "denied", "--tenant", "")
    assert [r["request_id"] for r in denied] == [unsigned.get_request_id()]
    resets = audit_records(server, "search", "--action", "ResetPassword", "--since", "10m")
    assert {r["request_id"] for r in resets} == {answer.RequestId, refused.get_request_id()}
    neutral = audit_records(server, "search", "--action", "reset_password", "--tenant", HW_PROJECT)
    assert [r["seq"] for r in neutral] == [r["seq"] for r in huawei]
    assert audit_records(server, "search", "--until", "2000-01-01T00:00:00") == []
    outputs += [json.dumps(found) for found in (by_request, denied, resets, neutral)]
    table = audit_cli(server, "tail", "-n", "50", "--tenant", TENANT)
    assert table.returncode == 0, table.stderr
    assert "redis:ResetPassword" in table.stdout and answer.RequestId in table.stdout
    assert "AuthFailure.SignatureFailure" not in table.stdout  # not this tenant's
    outputs.append(table.stdout)

    intact = audit_cli(server, "verify")
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert intact.stdout.startswith(f"chain intact, {len(tail)} records")
    server.stop()

    secrets = [new, weak, hw_new, tencent_redis.password, huawei_redis.password]
    secrets += [KEY_SECRET, OTHER_KEY_SECRET, HW_SK]
    assert not [s for s in secrets if any(s in out for out in outputs)]
    assert leaked(server, secrets) == []

    # Whoever can write the file rewrites history: verify names the record.
    target = mine[1]["seq"]
    with closing(sqlite3.connect(server.data_dir / DB_FILE, isolation_level=None)) as conn:
        conn.execute(
            "UPDATE audit_log SET event = replace(event, 'succeeded', 'failed') WHERE seq = ?",
            (target,),
        )
    broken = audit_cli(server, "verify")
    assert broken.returncode == 1
    assert f"chain broken at record {target}:" in broken.stdout
    assert "edited" in broken.stdout

    # Re-hashing the edit (and the rest of the chain) without the master key does not help.
    with closing(sqlite3.connect(server.data_dir / DB_FILE, isolation_level=None)) as conn:
        prev = conn.execute("SELECT prev_hash FROM audit_log WHERE seq = ?", (target,)).fetchone()
        for seq, text in conn.execute(
            "SELECT seq, event FROM audit_log WHERE seq >= ? ORDER BY seq", (target,)
        ).fetchall():
            digest = hashlib.sha256((prev[0] + text).encode()).hexdigest()
            conn.execute(
                "UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?", (prev[0], digest, seq)
            )
            prev = (digest,)
    rehashed = audit_cli(server, "verify")
    assert rehashed.returncode == 1
    assert f"chain broken at record {target}: its MAC does not match" in rehashed.stdout


def test_an_unwritable_audit_log_refuses_resets(
    make_server: Callable[..., KeyturnServer], redis_server: Any
) -> None:
    server = make_server()
    server.start()
    instance_id = new_instance_id()
    server.add_instance(instance_id, [redis_server.admin_url()])
    client = redis_sdk(server.endpoint)
    database = server.data_dir / DB_FILE
    with closing(sqlite3.connect(database, isolation_level=None)) as conn:
        conn.execute(
            "CREATE TRIGGER audit_unwritable BEFORE INSERT ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'x'); END"
        )

    new = new_password()
    refused = sdk_error(lambda: reset(client, instance_id, Password=new))
    assert refused.get_code() == "InternalError"
    assert can_login(redis_server.port, redis_server.password)
    assert not can_login(redis_server.port, new)
    # Reads still answer (their records are lost, and logged as such).
    described = client.DescribeInstances(models.DescribeInstancesRequest())
    assert instance_id in [i.InstanceId for i in described.InstanceSet]
    tasks = models.DescribeTaskListRequest()
    tasks.InstanceId = instance_id
    assert client.DescribeTaskList(tasks).TotalCount == 0

    # Once the log can be written again, the same reset goes through.
    with closing(sqlite3.connect(database, isolation_level=None)) as conn:
        conn.execute("DROP TRIGGER audit_unwritable")
    assert wait_task(client, reset(client, instance_id, Password=new)).Status == "succeed"
    assert can_login(redis_server.port, new)
    server.stop()
    assert "the audit log could not be written" in server.log()
    assert leaked(server, [new, redis_server.password, KEY_SECRET]) == []
    assert audit_cli(server, "verify").returncode == 0


HOSTILE = {
    "key_id": "AKID[/x]\x1b[2J",
    "user_agent": "[bold red]UA[/bold red]\x1b]0;title\x07",
    "resource": "qcs::redis:ap-guangzhou:uin/1:instance/crs-[/x][bold red]\u202eevil\x1b[31m",
    "request_id": "req-[link=http://x]:smile:",
}


def test_client_chosen_fields_print_inert(tmp_path: Path) -> None:
    """A SecretId like ``[/x]`` used to make ``tail`` exit with a markup error; other markup
    restyled or hid text and ANSI escapes reached the terminal."""
    data_dir = tmp_path / "data"

    async def write() -> None:
        store = await open_admin_store(load_settings(data_dir=data_dir, env={}))
        try:
            audit = open_audit_log(store, data_dir)
            for n in range(2):
                await audit.append(
                    AuditEvent(
                        at=datetime.now(UTC),
                        tenant_id="" if n else "1300000001",
                        key_id=HOSTILE["key_id"],
                        source_ip="127.0.0.1",
                        user_agent=HOSTILE["user_agent"],
                        vendor="tencent",
                        action="redis:ResetPassword",
                        neutral_action="reset_password",
                        resource=HOSTILE["resource"],
                        outcome=AuditOutcome.DENIED,
                        error_code="AuthFailure.SecretIdNotFound",
                        request_id=HOSTILE["request_id"],
                    )
                )
        finally:
            await store.close()

    asyncio.run(write())
    for colour in ({}, {"FORCE_COLOR": "1", "COLUMNS": "400"}):
        for args in (("tail",), ("search", "--outcome", "denied")):
            shown = audit_cli(data_dir, *args, env=colour)
            assert shown.returncode == 0, shown.stderr
            out = shown.stdout
            # Markup shows as the text it is...
            assert "AKID[/x]" in out and "crs-[/x][bold red]" in out
            assert "req-[link=http://x]:smile:" in out and "😄" not in out
            # ...and control characters as escapes, never raw.
            assert "\\x1b[2J" in out and "\\u202eevil\\x1b[31m" in out
            assert "\x1b[2J" not in out and "\u202e" not in out and "\x1b[31m" not in out
            if not colour:
                assert "\x1b" not in out
        as_json = audit_cli(data_dir, "tail", "--json", env=colour)
        assert as_json.returncode == 0 and as_json.stdout.isascii()
        for line in as_json.stdout.splitlines():
            record = json.loads(line)
            assert {k: record[k] for k in HOSTILE} == HOSTILE
            assert record["scheme"] == "hmac-sha256"
    assert audit_cli(data_dir, "verify").returncode == 0


def test_verify_needs_the_master_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "empty"
    done = audit_cli(data_dir, "verify")
    assert done.returncode == 2 and "no master key" in done.stderr
    assert not (data_dir / "master.key").exists()
