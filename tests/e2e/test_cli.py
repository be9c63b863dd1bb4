"""The ``keyturn`` command line as a user runs it: the first start hands over one admin key (on
a terminal, printed; otherwise in a 0600 file in the data dir, never in the output a service
manager keeps), the data dir is private (0700), the inventory commands manage the same data
dir, and secrets never show in listings."""

from __future__ import annotations

import os
import re
import select
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tencentcloud.redis.v20180412 import models

from tests.support.cli import keyturn_cli as keyturn
from tests.support.ports import free_port
from tests.support.sdk import redis_sdk

pytestmark = pytest.mark.engine


def start_serving(data_dir: Path, port: int, out: int) -> subprocess.Popen[bytes]:
    """``keyturn serve`` on a fresh data dir, stdout and stderr to ``out``, once healthy."""
    command = ["serve", "--data-dir", str(data_dir), "--port", str(port)]
    server = subprocess.Popen(
        [sys.executable, "-m", "keyturn", *command],
        stdout=out,
        stderr=out,
        env={**os.environ, "KEYTURN_LOG_LEVEL": "DEBUG"},
    )
    for _ in range(400):
        assert server.poll() is None, "keyturn exited early"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError("keyturn did not start")


def credentials(text: str) -> tuple[str, str]:
    found = re.search(r"SecretId\s+(\S+)\s+SecretKey\s+(\S+)", text)
    assert found, "no key in the text"
    return found.group(1), found.group(2)


def test_first_start_without_a_terminal_puts_the_key_in_a_private_file(tmp_path: Path) -> None:
    """stdout is a pipe (as under systemd or docker, which keep it): the secret goes to a 0600
    file in a 0700 data dir, and the output only says where it is."""
    data_dir, port, log_path = tmp_path / "data", free_port(), tmp_path / "server.log"
    with log_path.open("wb") as log:
        server = start_serving(data_dir, port, log.fileno())
    key_file = data_dir / "initial-admin-key.txt"
    try:
        secret_id, secret_key = credentials(key_file.read_text())
        client = redis_sdk(f"127.0.0.1:{port}", key_id=secret_id, secret=secret_key)
        assert client.DescribeInstances(models.DescribeInstancesRequest()).TotalCount == 0
    finally:
        server.terminate()
        server.wait(20)
    output = log_path.read_text()
    assert secret_key not in output and "SecretKey" not in output
    assert str(key_file) in output and secret_id in output  # where it is, and which key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((data_dir / "master.key").stat().st_mode) == 0o600
    # A second start on the same data dir creates no new key.
    listing = keyturn(data_dir, "keys", "list")
    assert listing.stdout.count("AKID") == 1 and secret_key not in listing.stdout


def test_first_start_on_a_terminal_prints_the_key_once(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    controller, terminal = os.openpty()
    try:
        server = start_serving(data_dir, port, terminal)
        try:
            seen = b""
            deadline = time.monotonic() + 20
            while b"serving on" not in seen and time.monotonic() < deadline:
                if select.select([controller], [], [], 0.5)[0]:
                    seen += os.read(controller, 65536)
            secret_id, secret_key = credentials(seen.decode(errors="replace"))
            client = redis_sdk(f"127.0.0.1:{port}", key_id=secret_id, secret=secret_key)
            assert client.DescribeInstances(models.DescribeInstancesRequest()).TotalCount == 0
        finally:
            server.terminate()
            server.wait(20)
    finally:
        os.close(controller)
        os.close(terminal)
    assert not (data_dir / "initial-admin-key.txt").exists()
    assert secret_key.encode() not in b"".join(
        p.read_bytes() for p in data_dir.rglob("*") if p.is_file()
    )


def test_an_open_data_dir_is_made_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    done = keyturn(data_dir, "tenants", "list")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert "tightened to 700" in done.stderr
    again = keyturn(data_dir, "tenants", "list")
    assert again.returncode == 0 and "tightened" not in again.stderr


def add_redis_instance(
    data: Path, instance_id: str, node: str, *options: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``keyturn instances add`` of a one-node Tencent Redis instance of tenant 1300000009."""
    return keyturn(
        data,
        "instances",
        "add",
        "--id",
        instance_id,
        "--tenant",
        "1300000009",
        "--product",
        "tencent-redis",
        "--region",
        "ap-guangzhou",
        "--node",
        node,
        *options,
        env=env,
    )


def test_inventory_commands(tmp_path: Path, redis_server) -> None:
    data = tmp_path / "data"
    assert keyturn(data, "tenants", "add", "1300000009", "--name", "ops").returncode == 0
    created = keyturn(data, "keys", "create", "--tenant", "1300000009")
    assert created.returncode == 0 and "SecretKey" in created.stdout
    url = f"redis://default:${{KT_NODE_PW}}@127.0.0.1:{redis_server.port}"
    node_env = {"KT_NODE_PW": redis_server.password}
    added = add_redis_instance(data, "crs-cli00001", url, env=node_env)
    assert added.returncode == 0, added.stderr
    listed = keyturn(data, "instances", "list")
    assert "crs-cli00001" in listed.stdout and redis_server.password not in listed.stdout
    assert "refused" in listed.stdout and "allowed" not in listed.stdout
    opted = add_redis_instance(data, "crs-cli00002", url, "--allow-admin-reset", env=node_env)
    assert opted.returncode == 0, opted.stderr
    assert "allowed" in keyturn(data, "instances", "list").stdout
    bad = add_redis_instance(data, "bogus", "redis://h:1")
    assert bad.returncode == 2 and "does not match" in bad.stderr
    key_id = created.stdout.split("SecretId", 1)[1].split()[0]
    assert keyturn(data, "keys", "revoke", key_id).returncode == 0
    assert "false" in keyturn(data, "keys", "list").stdout
    assert keyturn(data, "instances", "remove", "crs-cli00001").returncode == 0
    assert "crs-cli00001" not in keyturn(data, "instances", "list").stdout
    secrets_on_disk = b"".join(p.read_bytes() for p in data.rglob("*") if p.is_file())
    assert redis_server.password.encode() not in secrets_on_disk
