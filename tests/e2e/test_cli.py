"""The ``keyturn`` command line as a user runs it: first start prints one admin key, the
inventory commands manage the same data dir, and secrets never show in listings."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tencentcloud.redis.v20180412 import models

from tests.support.ports import free_port
from tests.support.sdk import redis_sdk

pytestmark = pytest.mark.engine


def keyturn(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keyturn", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=60,
    )


def test_first_start_prints_one_admin_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "keyturn",
            "serve",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert server.stdout is not None
    for line in server.stdout:
        lines.append(line)
        if "serving on" in line:
            break
    text = "".join(lines)
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    secret_id = text.split("SecretId", 1)[1].split()[0]
    secret_key = text.split("SecretKey", 1)[1].split()[0]
    client = redis_sdk(f"127.0.0.1:{port}", key_id=secret_id, secret=secret_key)
    assert client.DescribeInstances(models.DescribeInstancesRequest()).TotalCount == 0
    server.terminate()
    server.wait(20)
    server.stdout.close()
    assert (data_dir / "master.key").stat().st_mode & 0o777 == 0o600
    # A second start on the same data dir creates no new key.
    listing = keyturn(data_dir, "keys", "list")
    assert listing.stdout.count("AKID") == 1 and secret_key not in listing.stdout


def test_inventory_commands(tmp_path: Path, redis_server) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    assert keyturn(data, "tenants", "add", "1300000009", "--name", "ops").returncode == 0
    created = keyturn(data, "keys", "create", "--tenant", "1300000009")
    assert created.returncode == 0 and "SecretKey" in created.stdout
    url = f"redis://default:${{KT_NODE_PW}}@127.0.0.1:{redis_server.port}"
    added = keyturn(
        data,
        "instances",
        "add",
        "--id",
        "crs-cli00001",
        "--tenant",
        "1300000009",
        "--product",
        "tencent-redis",
        "--region",
        "ap-guangzhou",
        "--node",
        url,
        env={"KT_NODE_PW": redis_server.password},
    )
    assert added.returncode == 0, added.stderr
    listed = keyturn(data, "instances", "list")
    assert "crs-cli00001" in listed.stdout and redis_server.password not in listed.stdout
    assert "refused" in listed.stdout and "allowed" not in listed.stdout
    opted = keyturn(
        data,
        "instances",
        "add",
        "--id",
        "crs-cli00002",
        "--tenant",
        "1300000009",
        "--product",
        "tencent-redis",
        "--region",
        "ap-guangzhou",
        "--node",
        url,
        "--allow-admin-reset",
        env={"KT_NODE_PW": redis_server.password},
    )
    assert opted.returncode == 0, opted.stderr
    assert "allowed" in keyturn(data, "instances", "list").stdout
    bad = keyturn(
        data,
        "instances",
        "add",
        "--id",
        "bogus",
        "--tenant",
        "1300000009",
        "--product",
        "tencent-redis",
        "--region",
        "ap-guangzhou",
        "--node",
        "redis://h:1",
    )
    assert bad.returncode == 2 and "does not match" in bad.stderr
    key_id = created.stdout.split("SecretId", 1)[1].split()[0]
    assert keyturn(data, "keys", "revoke", key_id).returncode == 0
    assert "false" in keyturn(data, "keys", "list").stdout
    assert keyturn(data, "instances", "remove", "crs-cli00001").returncode == 0
    assert "crs-cli00001" not in keyturn(data, "instances", "list").stdout
    secrets_on_disk = b"".join(p.read_bytes() for p in data.rglob("*") if p.is_file())
    assert redis_server.password.encode() not in secrets_on_disk
