"""``keyturn keys rotate-master`` and ``keyturn keys rotate`` as an operator runs them, around a
real server and a real redis-server, checked through the official Tencent SDK.

After the master key is rotated (refused while the server runs) the restarted server still
opens every secret: inventory and CLI access keys sign, the instance's admin login works, an
encrypted password decrypts with the tenant's unchanged RSA key. After an access key's secret
is rotated the old secret stops working within the one-second key cache and the new one works;
a key declared in the inventory file is not rotated from the CLI. The audit chain is re-keyed
with the secrets and verifies before and after. Neither the old master key nor any password
or secret is left in the data dir or the server log.
"""

from __future__ import annotations

import base64
import os
import re
import time
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

from tests.support.cli import keyturn_cli as cli
from tests.support.keyturn_server import KEY_ID, KEY_SECRET, TENANT, KeyturnServer
from tests.support.logins import can_login
from tests.support.redis_server import RedisServer
from tests.support.sdk import redis_sdk, reset, task_info, wait_task

pytestmark = pytest.mark.engine

PASSWORDS: list[str] = []


def new_password() -> str:
    password = "Rk-" + os.urandom(9).hex() + "Q"
    PASSWORDS.append(password)
    return password


def credentials_of(output: str) -> tuple[str, str]:
    found = re.search(r"SecretId\s+(\S+)\s+SecretKey\s+(\S+)", output)
    assert found, output
    return found.group(1), found.group(2)


def public_key(endpoint: str) -> str:
    profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=endpoint))
    common = CommonClient(
        "redis", "2018-04-12", credential.Credential(KEY_ID, KEY_SECRET), "ap-guangzhou", profile
    )
    return str(common.call_json("GetPublicKey", {})["Response"]["PublicKey"])


def encrypted(public_der: str, password: str) -> str:
    key = serialization.load_der_public_key(base64.b64decode(public_der))
    assert isinstance(key, rsa.RSAPublicKey)
    return base64.b64encode(key.encrypt(password.encode(), padding.PKCS1v15())).decode()


def test_rotate_master_key_and_access_key(
    make_server: Callable[..., KeyturnServer], redis_server: RedisServer
) -> None:
    server = make_server()
    server.start()
    instance_id = "crs-" + os.urandom(4).hex()
    server.add_instance(instance_id, [redis_server.admin_url()])
    client = redis_sdk(server.endpoint)
    first = new_password()
    assert wait_task(client, reset(client, instance_id, Password=first)).Status == "succeed"
    rsa_before = public_key(server.endpoint)
    created = cli(server.data_dir, "keys", "create", "--tenant", TENANT)
    assert created.returncode == 0, created.stderr
    cli_key, cli_secret = credentials_of(created.stdout)

    running = cli(server.data_dir, "keys", "rotate-master")
    assert running.returncode == 2 and "stop it first" in running.stderr

    server.stop()
    before = cli(server.data_dir, "audit", "verify")
    assert before.returncode == 0, before.stdout + before.stderr
    old_master = (server.data_dir / "master.key").read_text().strip()
    rotated = cli(server.data_dir, "keys", "rotate-master")
    assert rotated.returncode == 0, rotated.stderr
    assert "The old key no longer opens anything" in rotated.stdout
    # The audit chain was re-keyed with the secrets: it verifies under the new key.
    records = before.stdout.split("chain intact, ", 1)[1].split()[0]
    assert f"audit chain re-keyed under the new key: {records} record(s)" in rotated.stdout
    after = cli(server.data_dir, "audit", "verify")
    assert after.returncode == 0 and after.stdout.startswith(f"chain intact, {records} records")
    assert after.stdout.split("(head ")[1][:64] in rotated.stdout
    assert (server.data_dir / "master.key").read_text().strip() != old_master
    assert sorted(p.name for p in server.data_dir.glob("master.key*")) == ["master.key"]

    server.start()
    assert public_key(server.endpoint) == rsa_before
    as_cli_key = redis_sdk(server.endpoint, key_id=cli_key, secret=cli_secret)
    second = new_password()
    task = reset(
        as_cli_key,
        instance_id,
        Password=encrypted(rsa_before, second),
        EncryptPassword=True,
        NoAuth=False,
    )
    assert wait_task(as_cli_key, task).Status == "succeed"
    assert can_login(redis_server.port, second) and not can_login(redis_server.port, first)

    # An access key's secret: printed once, the old one refused within the 1 s cache.
    inventory_key = cli(server.data_dir, "keys", "rotate", KEY_ID)
    assert inventory_key.returncode == 2 and "inventory file" in inventory_key.stderr
    renewed = cli(server.data_dir, "keys", "rotate", cli_key)
    assert renewed.returncode == 0, renewed.stderr
    same_id, new_secret = credentials_of(renewed.stdout)
    assert same_id == cli_key and new_secret != cli_secret
    deadline = time.monotonic() + 3
    while True:
        try:
            task_info(as_cli_key, task)
        except TencentCloudSDKException as exc:
            assert exc.get_code() == "AuthFailure.SignatureFailure"
            break
        assert time.monotonic() < deadline, "the old secret still works"
        time.sleep(0.1)
    fresh = redis_sdk(server.endpoint, key_id=cli_key, secret=new_secret)
    assert task_info(fresh, task).Status == "succeed"

    server.stop()
    assert cli(server.data_dir, "audit", "verify").returncode == 0
    secrets = [*PASSWORDS, old_master, cli_secret, new_secret, redis_server.password or ""]
    everything = server.data_bytes() + server.log().encode()
    assert [s for s in secrets if s.encode() in everything] == []
    assert b"PRIVATE KEY" not in server.data_bytes()
