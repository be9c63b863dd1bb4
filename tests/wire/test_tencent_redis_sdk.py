"""Tencent Cloud Redis ResetPassword end to end: the official tencentcloud-sdk-python-redis
client against a real keyturn server resetting real throwaway redis-servers.

keyturn logs in with a dedicated admin user (``RedisServer.admin_url``) so ResetPassword may
change ``default``, the instance password; an instance whose node keyturn logs in to as
``default`` refuses it unless it opts in (``allow_admin_reset``)."""

from __future__ import annotations

from functools import partial

import pytest
from tencentcloud.redis.v20180412 import models

from tests.support.keyturn_server import OTHER_KEY_ID, OTHER_KEY_SECRET, KeyturnServer
from tests.support.logins import can_login
from tests.support.passwords import USED_PASSWORDS, leaked, new_instance_id, new_password
from tests.support.sdk import code_of, redis_sdk, reset, task_info, wait_task

pytestmark = pytest.mark.engine


@pytest.fixture
def instance(keyturn: KeyturnServer, redis_server) -> tuple[str, object]:
    instance_id = new_instance_id()
    keyturn.add_instance(instance_id, [redis_server.admin_url()], name="orders-cache")
    return instance_id, redis_server


def test_reset_password_end_to_end(keyturn: KeyturnServer, instance) -> None:
    instance_id, server = instance
    old = server.password
    client = redis_sdk(keyturn.endpoint)
    new = new_password()
    task_id = reset(client, instance_id, Password=new, NoAuth=False)
    assert isinstance(task_id, int) and task_id > 0
    info = wait_task(client, task_id)
    assert info.Status == "succeed", info.TaskMessage
    assert info.InstanceId == instance_id
    assert can_login(server.port, new)
    assert not can_login(server.port, old)


def test_password_free_and_back(keyturn: KeyturnServer, instance) -> None:
    instance_id, server = instance
    client = redis_sdk(keyturn.endpoint)
    task_id = reset(client, instance_id, NoAuth=True)
    assert wait_task(client, task_id).Status == "succeed"
    assert can_login(server.port, None)
    described = client.DescribeInstances(models.DescribeInstancesRequest())
    mine = [i for i in described.InstanceSet if i.InstanceId == instance_id]
    assert mine and mine[0].NoAuth is True
    new = new_password()
    assert wait_task(client, reset(client, instance_id, Password=new)).Status == "succeed"
    assert not can_login(server.port, None)
    assert can_login(server.port, new)


@pytest.mark.parametrize(
    ("method", "sign_method", "unsigned"),
    [
        ("GET", None, False),
        ("POST", None, True),
        ("POST", "HmacSHA256", False),
        ("GET", "HmacSHA1", False),
        ("POST", "HmacSHA1", False),
    ],
)
def test_every_signing_variant(
    keyturn: KeyturnServer, instance, method, sign_method, unsigned
) -> None:
    instance_id, server = instance
    client = redis_sdk(
        keyturn.endpoint, method=method, sign_method=sign_method, unsigned_payload=unsigned
    )
    new = new_password()
    assert wait_task(client, reset(client, instance_id, Password=new)).Status == "succeed"
    assert can_login(server.port, new)


def test_parameter_and_rule_errors(keyturn: KeyturnServer, instance) -> None:
    instance_id, server = instance
    client = redis_sdk(keyturn.endpoint)
    assert code_of(lambda: reset(client, instance_id)) == "InvalidParameterValue.PasswordEmpty"
    assert code_of(lambda: reset(client, instance_id, Password="short")) == (
        "InvalidParameterValue.PasswordRuleError"
    )
    assert code_of(lambda: reset(client, instance_id, Password="/Abcdefgh1")) == (
        "InvalidParameterValue.PasswordRuleError"
    )
    assert code_of(lambda: reset(client, instance_id, Password="Abc def 123")) == (
        "InvalidParameterValue.PasswordRuleError"
    )
    assert (
        code_of(lambda: reset(client, instance_id, Password="Abcdefgh1", EncryptPassword=True))
        == "InvalidParameterValue"
    )
    request = models.ResetPasswordRequest()
    assert code_of(lambda: client.ResetPassword(request)) == "MissingParameter"
    assert can_login(server.port, server.password)  # nothing was applied


def test_password_free_denied(keyturn: KeyturnServer, redis_server) -> None:
    instance_id = new_instance_id()
    keyturn.add_instance(instance_id, [redis_server.admin_url()], password_free_allowed=False)
    client = redis_sdk(keyturn.endpoint)
    assert code_of(lambda: reset(client, instance_id, NoAuth=True)) == (
        "InvalidParameterValue.PasswordFreeDenied"
    )
    assert not can_login(redis_server.port, None)


def test_unknown_and_foreign_instances_look_the_same(keyturn: KeyturnServer, instance) -> None:
    instance_id, _ = instance
    mine = redis_sdk(keyturn.endpoint)
    other = redis_sdk(keyturn.endpoint, key_id=OTHER_KEY_ID, secret=OTHER_KEY_SECRET)
    password = new_password()
    assert code_of(lambda: reset(mine, "crs-00000000", Password=password)) == (
        "ResourceNotFound.InstanceNotExists"
    )
    assert code_of(lambda: reset(other, instance_id, Password=password)) == (
        "ResourceNotFound.InstanceNotExists"
    )
    listed = other.DescribeInstances(models.DescribeInstancesRequest())
    assert instance_id not in {i.InstanceId for i in listed.InstanceSet}


def test_unreachable_instance(keyturn: KeyturnServer, instance) -> None:
    instance_id, server = instance
    server.stop()
    client = redis_sdk(keyturn.endpoint)
    assert code_of(lambda: reset(client, instance_id, Password=new_password())) == (
        "ResourceUnavailable.InstanceStatusAbnormal"
    )


def test_companion_reads(keyturn: KeyturnServer, instance) -> None:
    instance_id, server = instance
    client = redis_sdk(keyturn.endpoint)
    task_id = reset(client, instance_id, Password=new_password())
    wait_task(client, task_id)

    request = models.DescribeInstancesRequest()
    request.InstanceId = instance_id
    found = client.DescribeInstances(request)
    assert found.TotalCount == 1
    item = found.InstanceSet[0]
    assert (item.InstanceId, item.InstanceName, item.Port) == (
        instance_id,
        "orders-cache",
        server.port,
    )
    assert item.Region == "ap-guangzhou" and item.CurrentRedisVersion.startswith("7")

    accounts_request = models.DescribeInstanceAccountRequest()
    accounts_request.InstanceId = instance_id
    accounts = client.DescribeInstanceAccount(accounts_request)
    assert "root" in {a.AccountName for a in accounts.Accounts}

    tasks_request = models.DescribeTaskListRequest()
    tasks_request.InstanceId = instance_id
    tasks = client.DescribeTaskList(tasks_request)
    assert tasks.TotalCount == 1 and tasks.Tasks[0].TaskId == task_id
    assert tasks.Tasks[0].Result == 2

    assert code_of(lambda: task_info(client, 987654321)) == "ResourceNotFound"


def test_unpersisted_change_is_reported(keyturn: KeyturnServer, redis_server_factory) -> None:
    """A server started without a config file cannot CONFIG REWRITE: the reset still succeeds
    (the password is in force) and the task message says it was not persisted."""
    server = redis_server_factory(config_file=False)
    instance_id = new_instance_id()
    keyturn.add_instance(instance_id, [server.admin_url()])
    client = redis_sdk(keyturn.endpoint)
    new = new_password()
    info = wait_task(client, reset(client, instance_id, Password=new))
    assert info.Status == "succeed"
    assert "not persisted" in info.TaskMessage
    assert can_login(server.port, new)


def test_encrypted_password(keyturn: KeyturnServer, instance) -> None:
    """EncryptPassword=true: Password is RSA ciphertext of the tenant's GetPublicKey key
    (PKCS#1 v1.5 as the Tencent SDK documents; OAEP accepted too)."""
    import base64

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    from tencentcloud.common import credential
    from tencentcloud.common.common_client import CommonClient
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile

    from tests.support.keyturn_server import KEY_ID, KEY_SECRET

    instance_id, server = instance
    profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=keyturn.endpoint))
    common = CommonClient(
        "redis", "2018-04-12", credential.Credential(KEY_ID, KEY_SECRET), "ap-guangzhou", profile
    )
    answer = common.call_json("GetPublicKey", {})["Response"]
    public = serialization.load_der_public_key(base64.b64decode(answer["PublicKey"]))
    assert answer["PublicKeyPem"].startswith("-----BEGIN PUBLIC KEY-----")
    client = redis_sdk(keyturn.endpoint)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    for scheme in (padding.PKCS1v15(), oaep):
        new = new_password()
        ciphertext = base64.b64encode(public.encrypt(new.encode(), scheme)).decode()  # type: ignore[union-attr]
        task = reset(client, instance_id, Password=ciphertext, EncryptPassword=True)
        assert wait_task(client, task).Status == "succeed"
        assert can_login(server.port, new)


def test_instance_password_keyturn_logs_in_with_is_refused(
    keyturn: KeyturnServer, redis_server
) -> None:
    """keyturn logs in as ``default``: resetting the instance password (or making it
    password-free) would hand the caller keyturn's own admin account, so it is refused and
    nothing changes; no task is made."""
    instance_id = new_instance_id()
    keyturn.add_instance(instance_id, [redis_server.url()])
    client = redis_sdk(keyturn.endpoint)
    for fields in ({"Password": new_password()}, {"NoAuth": True}):
        assert code_of(partial(reset, client, instance_id, **fields)) == (
            "InvalidParameter.PermissionDenied"
        )
    assert can_login(redis_server.port, redis_server.password)
    assert not can_login(redis_server.port, None)
    tasks = models.DescribeTaskListRequest()
    tasks.InstanceId = instance_id
    assert client.DescribeTaskList(tasks).TotalCount == 0


def test_instance_password_keyturn_logs_in_with_when_allowed(
    keyturn: KeyturnServer, redis_server
) -> None:
    """With ``allow_admin_reset`` keyturn resets its own admin account (the instance password)
    through its lockout guard, and keeps administering the instance with the new password."""
    instance_id = new_instance_id()
    keyturn.add_instance(instance_id, [redis_server.url()], allow_admin_reset=True)
    client = redis_sdk(keyturn.endpoint)
    old, new = redis_server.password, new_password()
    assert wait_task(client, reset(client, instance_id, Password=new)).Status == "succeed"
    assert can_login(redis_server.port, new)
    assert not can_login(redis_server.port, old)
    newer = new_password()
    assert wait_task(client, reset(client, instance_id, Password=newer)).Status == "succeed"
    assert can_login(redis_server.port, newer)


def test_no_secret_leaks(keyturn: KeyturnServer) -> None:
    """Runs last in this module: no password set above is in the log or the data dir."""
    assert USED_PASSWORDS
    assert leaked(keyturn, USED_PASSWORDS) == []
