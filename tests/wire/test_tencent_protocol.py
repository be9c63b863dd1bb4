"""Tencent API 3.0 protocol edges through the official SDK and raw HTTP: authentication
failures, unknown actions and versions, malformed and oversized bodies, tccli. Nothing a client
sends may produce a 5xx or a stack trace."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.redis.v20180412 import models

from tests.support.keyturn_server import KEY_ID, KEY_SECRET, KeyturnServer
from tests.support.passwords import new_instance_id, new_password
from tests.support.sdk import code_of, redis_sdk
from tests.support.tencent_raw import tc3_post, tencent_error

pytestmark = pytest.mark.engine


def describe(client) -> object:
    return client.DescribeInstances(models.DescribeInstancesRequest())


def test_auth_failures(keyturn: KeyturnServer, monkeypatch: pytest.MonkeyPatch) -> None:
    assert code_of(lambda: describe(redis_sdk(keyturn.endpoint, secret="wrong" * 6))) == (
        "AuthFailure.SignatureFailure"
    )
    assert code_of(lambda: describe(redis_sdk(keyturn.endpoint, key_id="AKIDnobody"))) == (
        "AuthFailure.SecretIdNotFound"
    )
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 3600)
    assert code_of(lambda: describe(redis_sdk(keyturn.endpoint))) == "AuthFailure.SignatureExpire"


def test_unknown_action_and_version(keyturn: KeyturnServer) -> None:
    profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=keyturn.endpoint))
    cred = credential.Credential(KEY_ID, KEY_SECRET)
    common = CommonClient("redis", "2018-04-12", cred, "ap-guangzhou", profile)
    assert code_of(lambda: common.call_json("NoSuchAction", {})) == "InvalidAction"
    old = CommonClient("redis", "2017-01-01", cred, "ap-guangzhou", profile)
    assert code_of(lambda: old.call_json("ResetPassword", {})) == "NoSuchVersion"
    other = CommonClient("cvm", "2017-03-12", cred, "ap-guangzhou", profile)
    assert code_of(lambda: other.call_json("DescribeInstances", {})) == "InvalidAction"


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        (b"{not json", "application/json", "InvalidParameter"),
        (b"[1, 2]", "application/json", "InvalidParameter"),
        (b"\xff\xfe", "application/json", "InvalidParameter"),
        (b'{"Limit": "lots"}', "application/json", "InvalidParameter"),
        (b'{"Limit": 100000}', "application/json", "InvalidParameterValue"),
        (b'{"InstanceIds": "crs-1"}', "application/json", "InvalidParameter"),
        (b"x", "application/octet-stream", "InvalidParameter"),
        (b"[" * 100000, "application/json", "InvalidParameter"),
    ],
)
def test_malformed_bodies(
    keyturn: KeyturnServer, body: bytes, content_type: str, code: str
) -> None:
    assert (
        tencent_error(
            tc3_post(keyturn.endpoint, "DescribeInstances", body, content_type=content_type)
        )
        == code
    )


def test_oversized_body(keyturn: KeyturnServer) -> None:
    body = json.dumps({"InstanceId": "x" * (2 * 1024 * 1024)}).encode()
    assert (
        tencent_error(tc3_post(keyturn.endpoint, "DescribeInstances", body))
        == "RequestSizeLimitExceeded"
    )


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "garbage", "X-TC-Action": "ResetPassword"},
        {"Authorization": "TC3-HMAC-SHA256 nonsense", "X-TC-Action": "ResetPassword"},
        {"Content-Type": "application/x-www-form-urlencoded"},
    ],
)
def test_garbage_requests_get_codes_not_5xx(
    keyturn: KeyturnServer, headers: dict[str, str]
) -> None:
    response = httpx.post(f"http://{keyturn.endpoint}/", content=b"\x00garbage", headers=headers)
    assert response.status_code < 500
    if response.status_code == 200:
        assert str(tencent_error(response)).startswith(("AuthFailure", "InvalidParameter"))


def test_tccli_reset_password(keyturn: KeyturnServer, redis_server, tmp_path: Path) -> None:
    tccli = shutil.which("tccli") or str(Path(sys.executable).parent / "tccli")
    instance_id = new_instance_id()
    keyturn.add_instance(instance_id, [redis_server.admin_url()])
    env = {"HOME": str(tmp_path), "PATH": str(Path(sys.executable).parent)}
    subprocess.run(
        [
            tccli,
            "configure",
            "set",
            "secretId",
            KEY_ID,
            "secretKey",
            KEY_SECRET,
            "region",
            "ap-guangzhou",
            "output",
            "json",
        ],
        check=True,
        env=env,
        capture_output=True,
    )

    def reset_password(password: str) -> subprocess.CompletedProcess[str]:
        """``tccli redis ResetPassword`` of the instance, against keyturn."""
        return subprocess.run(
            [
                tccli,
                "redis",
                "ResetPassword",
                "--endpoint",
                f"http://{keyturn.endpoint}",
                "--InstanceId",
                instance_id,
                "--Password",
                password,
                "--NoAuth",
                "False",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    password = new_password()
    result = reset_password(password)
    assert result.returncode == 0, result.stderr
    task_id = json.loads(result.stdout)["TaskId"]
    client = redis_sdk(keyturn.endpoint)
    from tests.support.sdk import wait_task

    assert wait_task(client, task_id).Status == "succeed"
    failed = reset_password("short")
    assert failed.returncode != 0
    assert "InvalidParameterValue.PasswordRuleError" in failed.stderr


def test_revoked_key_stops_working_within_a_second(keyturn: KeyturnServer) -> None:
    import asyncio

    from keyturn.bootstrap import open_admin_store
    from keyturn.config import load_settings
    from keyturn.service.admin import Admin
    from tests.support.keyturn_server import TENANT

    async def make_and_revoke(revoke: str | None) -> tuple[str, str]:
        store = await open_admin_store(
            load_settings(data_dir=keyturn.data_dir, env=keyturn.store_env)
        )
        try:
            if revoke:
                await Admin(store).revoke_key(revoke)
                return revoke, ""
            key = await Admin(store).create_key(TENANT)
            return key.id, key.secret.reveal()
        finally:
            await store.close()

    key_id, secret = asyncio.run(make_and_revoke(None))
    client = redis_sdk(keyturn.endpoint, key_id=key_id, secret=secret)
    describe(client)
    asyncio.run(make_and_revoke(key_id))
    time.sleep(1.1)
    assert code_of(lambda: describe(client)) == "AuthFailure.SecretIdNotFound"
