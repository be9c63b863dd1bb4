"""Authorization policies and tenant isolation through the official SDKs of each vendor,
against a real keyturn server and real throwaway redis-servers.

Keys with policies in each vendor's shape (Tencent CAM, Alibaba RAM, Huawei IAM) are made in
the server's data dir as the CLI makes them. An allowed reset works; a reset the policy does
not allow, or explicitly denies, is refused with the vendor's code and HTTP status and changes
nothing (the old password still logs in); a named policy changed afterwards applies within the
key cache's second. A key of another tenant gets the same not-found answers for this tenant's
instances and tasks as for ids that do not exist, whatever its policy says.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.redis.v20180412 import models

from keyturn.core.model import Product
from tests.support.alibaba_sdk import KvstoreSdk, sdk_error
from tests.support.huawei_sdk import (
    ClientRequestException,
    ShowInstanceRequest,
    ShowJobInfoRequest,
    dcs_client,
    reset_password,
)
from tests.support.keys import make_key
from tests.support.keyturn_server import (
    HW_PROJECT,
    OTHER_KEY_ID,
    OTHER_KEY_SECRET,
    OTHER_TENANT,
    TENANT,
    KeyturnServer,
)
from tests.support.logins import can_login
from tests.support.passwords import USED_PASSWORDS, leaked, new_password
from tests.support.redis_server import RedisServer
from tests.support.sdk import redis_sdk, reset, task_info, wait_task

pytestmark = pytest.mark.engine

DENIED_TC = "AuthFailure.UnauthorizedOperation"
DENIED_ALI = ("Forbidden.RAM", 403)
DENIED_HW = ("APIGW.0302", 403)


def put_policy(keyturn: KeyturnServer, tenant: str, name: str, document: dict[str, Any]) -> None:
    keyturn.with_admin(lambda admin: admin.put_policy(tenant, name, json.dumps(document)))


def tc_code(call: Callable[..., object], *args: Any, **kwargs: Any) -> str:
    """The Tencent error code ``call(*args, **kwargs)`` raises through the SDK."""
    with pytest.raises(TencentCloudSDKException) as caught:
        call(*args, **kwargs)
    return str(caught.value.get_code())


def ali_error(call: Callable[..., object], *args: Any, **kwargs: Any) -> tuple[str, int]:
    return sdk_error(lambda: call(*args, **kwargs))


def hw_error(call: Callable[..., object], *args: Any, **kwargs: Any) -> tuple[str, int]:
    with pytest.raises(ClientRequestException) as caught:
        call(*args, **kwargs)
    return str(caught.value.error_code), int(caught.value.status_code)


def allow(actions: list[str], resources: list[str]) -> dict[str, Any]:
    """A CAM-shaped single-statement allow."""
    return {
        "version": "2.0",
        "statement": [{"effect": "allow", "action": actions, "resource": resources}],
    }


def cam_resource(instance: str, tenant: str = TENANT) -> str:
    return f"qcs::redis:*:uin/{tenant}:instance/{instance}"


# --------------------------------------------------------------------------- Tencent


def tencent_instance(keyturn: KeyturnServer, server: RedisServer, prefix: str = "crs-") -> str:
    instance_id = prefix + secrets.token_hex(4)
    keyturn.add_instance(instance_id, [server.admin_url()])
    return instance_id


def task_count(client: Any, instance_id: str) -> int:
    request = models.DescribeTaskListRequest()
    request.InstanceId = instance_id
    return int(client.DescribeTaskList(request).TotalCount)


def test_tencent_policy_allows_only_matching_instances(
    keyturn: KeyturnServer, redis_server_factory: Callable[..., RedisServer]
) -> None:
    allowed_server, other_server = redis_server_factory(), redis_server_factory()
    allowed = tencent_instance(keyturn, allowed_server, "crs-allowed")
    other = tencent_instance(keyturn, other_server)
    key_id, secret = make_key(
        keyturn,
        TENANT,
        inline=allow(["redis:ResetPassword"], [cam_resource("crs-allowed*")]),
    )
    client = redis_sdk(keyturn.endpoint, key_id=key_id, secret=secret)
    admin = redis_sdk(keyturn.endpoint)

    new = new_password()
    task_id = reset(client, allowed, Password=new)
    assert wait_task(admin, task_id).Status == "succeed"
    assert can_login(allowed_server.port, new)

    old = other_server.password
    assert tc_code(reset, client, other, Password=new_password()) == DENIED_TC
    assert can_login(other_server.port, old)
    assert task_count(admin, other) == 0  # nothing was queued
    # Reads are actions too, and this policy grants none.
    assert tc_code(task_info, client, task_id) == DENIED_TC
    assert tc_code(client.DescribeInstances, models.DescribeInstancesRequest()) == (DENIED_TC)


def test_tencent_explicit_deny_beats_allow_and_named_policies_follow_changes(
    keyturn: KeyturnServer, redis_server_factory: Callable[..., RedisServer]
) -> None:
    denied_server, open_server = redis_server_factory(), redis_server_factory()
    denied = tencent_instance(keyturn, denied_server)
    opened = tencent_instance(keyturn, open_server)
    everything = f"redis-all-{secrets.token_hex(3)}"
    put_policy(keyturn, TENANT, everything, allow(["redis:*"], ["*"]))
    deny = {
        "version": "2.0",
        "statement": [
            {"effect": "deny", "action": "name/redis:Reset*", "resource": cam_resource(denied)}
        ],
    }
    key_id, secret = make_key(keyturn, TENANT, inline=deny, names=(everything,))
    client = redis_sdk(keyturn.endpoint, key_id=key_id, secret=secret)

    old = denied_server.password
    assert tc_code(reset, client, denied, Password=new_password()) == DENIED_TC
    assert can_login(denied_server.port, old)
    new = new_password()
    assert wait_task(client, reset(client, opened, Password=new)).Status == "succeed"
    assert can_login(open_server.port, new)

    # The named policy now allows reads only: the key follows within the cache's second.
    put_policy(keyturn, TENANT, everything, allow(["redis:Describe*"], ["*"]))
    time.sleep(1.1)
    current = new
    assert tc_code(reset, client, opened, Password=new_password()) == DENIED_TC
    assert can_login(open_server.port, current)
    assert client.DescribeInstances(models.DescribeInstancesRequest()).TotalCount >= 2


def test_tencent_sql_products_use_their_action_names(keyturn: KeyturnServer) -> None:
    """postgres:ResetAccountPassword and tdmysql:ResetUserPassword are what policies name; the
    nodes are unreachable, so an allowed call reaches the engine check and fails there."""
    pg, td = "postgres-" + secrets.token_hex(4), "tdsql-" + secrets.token_hex(4)
    keyturn.add_instance(
        pg,
        ["postgresql://postgres:unused-Admin-1@127.0.0.1:1/postgres"],
        product=Product.TENCENT_POSTGRES,
    )
    keyturn.add_instance(
        td, ["mysql://root:unused-Admin-1@127.0.0.1:1"], product=Product.TENCENT_TDMYSQL
    )
    key_id, secret = make_key(
        keyturn,
        TENANT,
        inline=allow(
            ["postgres:ResetAccountPassword", "tdmysql:ResetUserPassword"],
            [f"qcs::postgres:*:uin/{TENANT}:instance/{pg}", f"qcs::tdmysql:*:uin/{TENANT}:*"],
        ),
    )
    profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=keyturn.endpoint))
    cred = credential.Credential(key_id, secret)
    postgres = CommonClient("postgres", "2017-03-12", cred, "ap-guangzhou", profile)
    tdmysql = CommonClient("tdmysql", "2021-11-22", cred, "ap-guangzhou", profile)
    pg_reset = {"DBInstanceId": pg, "UserName": "app", "Password": new_password()}
    assert tc_code(postgres.call_json, "ResetAccountPassword", pg_reset) == (
        "InvalidInstanceStatus"
    )
    assert tc_code(postgres.call_json, "DescribeAccounts", {"DBInstanceId": pg}) == (DENIED_TC)
    td_reset = {"InstanceId": td, "UserName": "app", "Host": "%", "Password": new_password()}
    assert tc_code(tdmysql.call_json, "ResetUserPassword", td_reset) == (
        "OperationDenied.InstanceStatusError"
    )
    assert tc_code(tdmysql.call_json, "DescribeUsers", {"InstanceId": td}) == DENIED_TC


def test_tencent_cross_tenant_is_not_found_whatever_the_policy(
    keyturn: KeyturnServer, redis_server: RedisServer
) -> None:
    mine = tencent_instance(keyturn, redis_server)
    admin = redis_sdk(keyturn.endpoint)
    new = new_password()
    task_id = reset(admin, mine, Password=new)
    assert wait_task(admin, task_id).Status == "succeed"
    unknown = "crs-" + secrets.token_hex(4)
    # The other tenant's administrator, and a key of it whose policy allows any account's
    # instances: both see this tenant's ids exactly as ids that do not exist.
    wide_id, wide_secret = make_key(
        keyturn, OTHER_TENANT, inline=allow(["redis:*"], ["qcs::redis:*:*:instance/*", "*"])
    )
    for key_id, secret in ((OTHER_KEY_ID, OTHER_KEY_SECRET), (wide_id, wide_secret)):
        other = redis_sdk(keyturn.endpoint, key_id=key_id, secret=secret)
        for target in (mine, unknown):
            assert tc_code(reset, other, target, Password=new_password()) == (
                "ResourceNotFound.InstanceNotExists"
            )
            request = models.DescribeInstanceAccountRequest()
            request.InstanceId = target
            assert tc_code(other.DescribeInstanceAccount, request) == (
                "ResourceNotFound.InstanceNotExists"
            )
            listing = models.DescribeInstancesRequest()
            listing.InstanceIds = [target]
            assert other.DescribeInstances(listing).TotalCount == 0
            assert task_count(other, target) == 0
        for task in (task_id, 10**12):
            assert tc_code(task_info, other, task) == "ResourceNotFound"
    # A key of the other tenant whose policy names this tenant's account explicitly is refused
    # the same way for an existing and an unknown id: the refusal tells nothing either.
    named_id, named_secret = make_key(
        keyturn, OTHER_TENANT, inline=allow(["redis:*"], [cam_resource("*")])
    )
    named = redis_sdk(keyturn.endpoint, key_id=named_id, secret=named_secret)
    for target in (mine, unknown):
        assert tc_code(reset, named, target, Password=new_password()) == DENIED_TC
    assert can_login(redis_server.port, new)


# --------------------------------------------------------------------------- Alibaba


def kvstore_instance(
    keyturn: KeyturnServer, server: RedisServer, prefix: str = "r-", tenant: str = TENANT
) -> tuple[str, str]:
    """A registered alibaba-kvstore instance with an ACL user ``app``: (id, its password)."""
    instance_id = prefix + secrets.token_hex(5)
    password = new_password()
    admin = redis.Redis(
        host="127.0.0.1", port=server.port, password=server.password, protocol=2, driver_info=None
    )
    try:
        rules = ("~*", "+@all", "-@dangerous")  # a data account: a superuser is not resettable
        admin.execute_command("ACL", "SETUSER", "app", "on", f">{password}", *rules)
    finally:
        admin.close()
    keyturn.add_instance(
        instance_id,
        [server.admin_url()],
        product=Product.ALIBABA_KVSTORE,
        region="cn-hangzhou",
        tenant=tenant,
    )
    return instance_id, password


def ram(effect: str, action: str, resource: str) -> dict[str, Any]:
    return {
        "Version": "1",
        "Statement": [{"Effect": effect, "Action": action, "Resource": resource}],
    }


def test_alibaba_ram_policies(
    keyturn: KeyturnServer, redis_server_factory: Callable[..., RedisServer]
) -> None:
    allowed_server, other_server = redis_server_factory(), redis_server_factory()
    allowed, _ = kvstore_instance(keyturn, allowed_server, "r-allowed")
    other, other_password = kvstore_instance(keyturn, other_server)
    key_id, secret = make_key(
        keyturn,
        TENANT,
        inline=ram(
            "Allow",
            "kvstore:ResetAccountPassword",
            f"acs:kvstore:*:{TENANT}:instance/r-allowed*",
        ),
    )
    new = new_password()
    for kind in ("tea", "legacy"):
        sdk = KvstoreSdk(kind, keyturn.endpoint, key_id=key_id, secret=secret)
        fields = {"AccountName": "app", "AccountPassword": new}
        sdk.call("ResetAccountPassword", InstanceId=allowed, **fields)
        assert can_login(allowed_server.port, new, "app")
        denied = ali_error(sdk.call, "ResetAccountPassword", InstanceId=other, **fields)
        assert denied == DENIED_ALI
        assert ali_error(sdk.call, "DescribeInstances") == DENIED_ALI
    assert can_login(other_server.port, other_password, "app")

    # Explicit deny beats a named allow of everything.
    everything = f"kvstore-all-{secrets.token_hex(3)}"
    put_policy(keyturn, TENANT, everything, ram("Allow", "kvstore:*", "*"))
    deny = ram("Deny", "kvstore:*AccountPassword", f"acs:kvstore:*:{TENANT}:instance/{other}")
    key_id, secret = make_key(keyturn, TENANT, inline=deny, names=(everything,))
    sdk = KvstoreSdk("tea", keyturn.endpoint, key_id=key_id, secret=secret)
    attempt = {"InstanceId": other, "AccountName": "app", "AccountPassword": new_password()}
    assert ali_error(sdk.call, "ResetAccountPassword", **attempt) == DENIED_ALI
    assert can_login(other_server.port, other_password, "app")
    newer = new_password()
    sdk.call("ResetAccountPassword", InstanceId=allowed, AccountName="app", AccountPassword=newer)
    assert can_login(allowed_server.port, newer, "app")
    assert sdk.call("DescribeInstances", InstanceIds=other)["TotalCount"] == 1


def test_alibaba_cross_tenant_is_not_found(
    keyturn: KeyturnServer, redis_server: RedisServer
) -> None:
    mine, password = kvstore_instance(keyturn, redis_server)
    unknown = "r-" + secrets.token_hex(5)
    wide_id, wide_secret = make_key(
        keyturn, OTHER_TENANT, inline=ram("Allow", "kvstore:*", "acs:kvstore:*:*:instance/*")
    )
    for key_id, secret in ((OTHER_KEY_ID, OTHER_KEY_SECRET), (wide_id, wide_secret)):
        sdk = KvstoreSdk("tea", keyturn.endpoint, key_id=key_id, secret=secret)
        for target in (mine, unknown):
            fields = {"InstanceId": target, "AccountName": "app"}
            assert ali_error(
                sdk.call, "ResetAccountPassword", **fields, AccountPassword=new_password()
            ) == ("InvalidInstanceId.NotFound", 404)
            assert ali_error(sdk.call, "DescribeAccounts", InstanceId=target) == (
                "InvalidInstanceId.NotFound",
                404,
            )
            assert sdk.call("DescribeInstances", InstanceIds=target)["TotalCount"] == 0
    assert can_login(redis_server.port, password, "app")


# --------------------------------------------------------------------------- Huawei


def dcs_instance(keyturn: KeyturnServer, server: RedisServer) -> str:
    instance_id = str(uuid.uuid4())
    keyturn.add_instance(
        instance_id,
        [server.admin_url()],
        product=Product.HUAWEI_DCS,
        region="cn-north-4",
        tenant=HW_PROJECT,
    )
    return instance_id


def iam(effect: str, action: str, resource: str | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": effect, "Action": [action]}
    if resource is not None:
        statement["Resource"] = [resource]
    return {"Version": "1.1", "Statement": [statement]}


def test_huawei_iam_policies(
    keyturn: KeyturnServer, redis_server_factory: Callable[..., RedisServer]
) -> None:
    allowed_server, other_server = redis_server_factory(), redis_server_factory()
    allowed, other = dcs_instance(keyturn, allowed_server), dcs_instance(keyturn, other_server)
    key_id, secret = make_key(
        keyturn,
        HW_PROJECT,
        inline=iam(
            "Allow", "dcs:instance:modifyAuthInfo", f"dcs:*:{HW_PROJECT}:instance:{allowed}"
        ),
    )
    client = dcs_client(keyturn.endpoint, ak=key_id, sk=secret)
    new = new_password()
    assert reset_password(client, allowed, new_password=new).status_code == 200
    assert can_login(allowed_server.port, new)
    old = other_server.password
    assert hw_error(reset_password, client, other, new_password=new_password()) == (DENIED_HW)
    assert can_login(other_server.port, old)
    show = ShowInstanceRequest(instance_id=allowed)
    assert hw_error(client.show_instance, show) == DENIED_HW

    # Explicit deny (Huawei's upper-case service in the resource) beats an allow of everything
    # (version 1.1 without Resource: every resource).
    everything = f"dcs-all-{secrets.token_hex(3)}"
    put_policy(keyturn, HW_PROJECT, everything, iam("Allow", "dcs:*:*"))
    deny = iam("Deny", "dcs:instance:modifyAuthInfo", f"DCS:*:*:instance:{other}")
    key_id, secret = make_key(keyturn, HW_PROJECT, inline=deny, names=(everything,))
    client = dcs_client(keyturn.endpoint, ak=key_id, sk=secret)
    assert hw_error(reset_password, client, other, new_password=new_password()) == (DENIED_HW)
    assert can_login(other_server.port, old)
    newer = new_password()
    assert reset_password(client, allowed, new_password=newer).status_code == 200
    assert can_login(allowed_server.port, newer)
    assert client.show_instance(ShowInstanceRequest(instance_id=other)).instance_id == other


def test_huawei_cross_tenant_is_not_found(
    keyturn: KeyturnServer,
    redis_server: RedisServer,
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    mine = dcs_instance(keyturn, redis_server)
    old = redis_server.password
    unknown = str(uuid.uuid4())
    # A task of another tenant (made through Tencent on another server) is no job here.
    tencent_server = redis_server_factory()
    crs = tencent_instance(keyturn, tencent_server)
    admin = redis_sdk(keyturn.endpoint)
    task_id = reset(admin, crs, Password=new_password())
    assert wait_task(admin, task_id).Status == "succeed"
    wide_id, wide_secret = make_key(keyturn, OTHER_TENANT, inline=iam("Allow", "dcs:*:*"))
    for key_id, secret in ((OTHER_KEY_ID, OTHER_KEY_SECRET), (wide_id, wide_secret)):
        client = dcs_client(keyturn.endpoint, ak=key_id, sk=secret, project=OTHER_TENANT)
        for target in (mine, unknown):
            assert hw_error(reset_password, client, target, new_password=new_password()) == (
                "111404022",
                404,
            )
            request = ShowInstanceRequest(instance_id=target)
            assert hw_error(client.show_instance, request) == ("111404022", 404)
        for job in (str(task_id), str(10**12)):
            assert hw_error(client.show_job_info, ShowJobInfoRequest(job_id=job)) == (
                "111404001",
                404,
            )
    assert can_login(redis_server.port, old)


def test_no_secret_leaks(keyturn: KeyturnServer) -> None:
    """Runs last in this module: no password set above is in the log or the data dir."""
    assert USED_PASSWORDS
    assert leaked(keyturn, USED_PASSWORDS) == []
