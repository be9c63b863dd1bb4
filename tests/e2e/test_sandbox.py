"""``keyturn sandbox`` as a newcomer runs it: it starts real engines, registers the five
products, and each is reset through its vendor's official SDK with the key and addresses of
``sandbox.json``; the new passwords log in on the engines and are in none of keyturn's files.
SIGTERM stops everything it started. A second run after a SIGKILLed one sweeps up what that one
left running and prints the same key."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tencentcloud.postgres.v20170312 import models as pg_models

from tests.support.alibaba_sdk import KvstoreSdk
from tests.support.huawei_sdk import dcs_client, reset_password
from tests.support.logins import can_login, can_login_mysql, can_login_postgres
from tests.support.passwords import new_password
from tests.support.sandbox import SandboxRun, processes_under
from tests.support.sdk import (
    postgres_sdk,
    redis_sdk,
    reset,
    tdmysql_sdk,
    users_request,
    wait_task,
)

pytestmark = pytest.mark.engine

PRODUCTS = {"tencent-redis", "tencent-postgres", "tencent-tdmysql", "alibaba-kvstore", "huawei-dcs"}


@pytest.fixture
def runs() -> Iterator[list[SandboxRun]]:
    made: list[SandboxRun] = []
    yield made
    for run in made:
        run.kill()


def port_of(entry: dict[str, Any]) -> int:
    return int(entry["address"].rsplit(":", 1)[1])


def files_holding(root: Path, secrets: list[str], extra: list[Path]) -> list[str]:
    hits = []
    for path in [*(p for p in root.rglob("*") if p.is_file()), *extra]:
        data = path.read_bytes()
        hits += [f"{path}" for secret in secrets if secret.encode() in data]
    return hits


def test_each_product_resets_through_its_sdk_and_sigterm_leaves_nothing_running(
    tmp_path: Path, runs: list[SandboxRun]
) -> None:
    run = SandboxRun(tmp_path / "data")
    runs.append(run)
    doc = run.wait_ready()
    assert stat.S_IMODE(run.json_path.stat().st_mode) == 0o600
    assert set(doc["products"]) == PRODUCTS, doc["skipped"]
    assert doc["tenant"] == "sandbox"
    endpoint = doc["endpoint"].removeprefix("http://")
    key_id, secret = doc["key"]["id"], doc["key"]["secret"]
    assert key_id in run.log() and f"http://{endpoint}" in run.log()
    products = doc["products"]
    passwords = {name: new_password() for name in PRODUCTS}

    # Tencent Redis: ResetPassword, then DescribeTaskInfo until it succeeded.
    entry = products["tencent-redis"]
    client = redis_sdk(endpoint, key_id=key_id, secret=secret)
    task = reset(client, entry["instance_id"], Password=passwords["tencent-redis"])
    assert wait_task(client, task).Status == "succeed"
    assert can_login(port_of(entry), passwords["tencent-redis"], entry["account"])

    # Tencent PostgreSQL: synchronous ResetAccountPassword.
    entry = products["tencent-postgres"]
    request = pg_models.ResetAccountPasswordRequest()
    request.DBInstanceId, request.UserName = entry["instance_id"], entry["account"]
    request.Password = passwords["tencent-postgres"]
    postgres_sdk(endpoint, key_id=key_id, secret=secret).ResetAccountPassword(request)
    assert can_login_postgres(port_of(entry), entry["account"], passwords["tencent-postgres"])

    # Tencent TDSQL MySQL (on MariaDB): the SDK's batch ResetUsersPassword.
    entry = products["tencent-tdmysql"]
    batch = users_request(
        entry["instance_id"],
        (entry["account"], entry["account_host"], passwords["tencent-tdmysql"]),
    )
    assert tdmysql_sdk(endpoint, key_id=key_id, secret=secret).ResetUsersPassword(batch).FlowId
    assert can_login_mysql(port_of(entry), entry["account"], passwords["tencent-tdmysql"])

    # Alibaba R-kvstore: ResetAccountPassword of the ACL user the sandbox made.
    entry = products["alibaba-kvstore"]
    KvstoreSdk("tea", endpoint, key_id=key_id, secret=secret).call(
        "ResetAccountPassword",
        InstanceId=entry["instance_id"],
        AccountName=entry["account"],
        AccountPassword=passwords["alibaba-kvstore"],
    )
    assert can_login(port_of(entry), passwords["alibaba-kvstore"], entry["account"])

    # Huawei DCS: the tenant is the project id.
    entry = products["huawei-dcs"]
    dcs = dcs_client(endpoint, ak=key_id, sk=secret, project=doc["tenant"])
    reset_password(dcs, entry["instance_id"], new_password=passwords["huawei-dcs"])
    assert can_login(port_of(entry), passwords["huawei-dcs"], entry["account"])

    engine_dirs = run.engine_dirs
    assert run.stop() == 0
    processes, ports = run.leftovers()
    assert processes == [] and ports == []
    assert not any(d.exists() for d in engine_dirs)
    assert not run.json_path.exists() and not (run.data_dir / "sandbox").exists()
    assert files_holding(run.data_dir, list(passwords.values()), [run.log_path]) == []


def test_a_second_run_sweeps_up_after_a_killed_one_and_keeps_the_key(
    tmp_path: Path, runs: list[SandboxRun]
) -> None:
    data_dir = tmp_path / "data"
    first = SandboxRun(data_dir, engines="redis")
    runs.append(first)
    doc = first.wait_ready()
    assert set(doc["products"]) == {"tencent-redis", "alibaba-kvstore", "huawei-dcs"}
    assert set(doc["skipped"]) == {"tencent-postgres", "tencent-tdmysql"}
    first.process.kill()  # no clean-up: its redis-servers stay up
    first.process.wait(30)
    orphans = processes_under([data_dir])
    assert len(orphans) == 3, orphans

    second = SandboxRun(data_dir, engines="redis")
    runs.append(second)
    again = second.wait_ready()
    assert again["key"] == doc["key"]
    assert not any(line in processes_under([data_dir]) for line in orphans)
    assert "stopped 3 process(es) an earlier sandbox left running" in second.log()
    entry = again["products"]["tencent-redis"]
    client = redis_sdk(
        again["endpoint"].removeprefix("http://"),
        key_id=again["key"]["id"],
        secret=again["key"]["secret"],
    )
    password = new_password()
    assert wait_task(client, reset(client, entry["instance_id"], Password=password)).Status == (
        "succeed"
    )
    assert can_login(port_of(entry), password)

    # Another sandbox on the same data dir is refused, and touches nothing.
    third = SandboxRun(data_dir, engines="redis")
    runs.append(third)
    assert third.process.wait(60) == 2
    assert "a sandbox is already running" in third.log()

    assert second.stop() == 0
    assert second.leftovers() == ([], [])
