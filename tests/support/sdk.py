"""Official Tencent Cloud SDK clients pointed at a keyturn server, task polling, and the error
code of a refused call."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.postgres.v20170312 import postgres_client
from tencentcloud.redis.v20180412 import models, redis_client
from tencentcloud.tdmysql.v20211122 import models as tdmysql_models
from tencentcloud.tdmysql.v20211122 import tdmysql_client

from tests.support.keyturn_server import KEY_ID, KEY_SECRET


def redis_sdk(
    endpoint: str,
    *,
    key_id: str = KEY_ID,
    secret: str = KEY_SECRET,
    method: str = "POST",
    sign_method: str | None = None,
    unsigned_payload: bool = False,
) -> redis_client.RedisClient:
    http = HttpProfile(protocol="http", endpoint=endpoint, reqMethod=method)
    profile = ClientProfile(httpProfile=http, signMethod=sign_method)
    profile.unsignedPayload = unsigned_payload
    return redis_client.RedisClient(credential.Credential(key_id, secret), "ap-guangzhou", profile)


def profile(endpoint: str) -> ClientProfile:
    return ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=endpoint))


def postgres_sdk(
    endpoint: str, *, key_id: str = KEY_ID, secret: str = KEY_SECRET
) -> postgres_client.PostgresClient:
    cred = credential.Credential(key_id, secret)
    return postgres_client.PostgresClient(cred, "ap-guangzhou", profile(endpoint))


def tdmysql_sdk(
    endpoint: str, *, key_id: str = KEY_ID, secret: str = KEY_SECRET
) -> tdmysql_client.TdmysqlClient:
    cred = credential.Credential(key_id, secret)
    return tdmysql_client.TdmysqlClient(cred, "ap-guangzhou", profile(endpoint))


def tdmysql_common(endpoint: str) -> CommonClient:
    """The seed's flat ``ResetUserPassword`` goes through ``CommonClient``."""
    cred = credential.Credential(KEY_ID, KEY_SECRET)
    return CommonClient("tdmysql", "2021-11-22", cred, "ap-guangzhou", profile(endpoint))


def users_request(instance_id: str, *users: tuple[str, str, str]) -> Any:
    """A ``ResetUsersPassword`` of ``(user, host, password)`` entries."""
    request = tdmysql_models.ResetUsersPasswordRequest()
    request.InstanceId = instance_id
    request.Users = []
    for name, host, password in users:
        info = tdmysql_models.ResetUserPasswordInfo()
        info.UserName, info.Host, info.Password = name, host, password
        request.Users.append(info)
    return request


def reset(client: redis_client.RedisClient, instance_id: str, **fields: Any) -> int:
    request = models.ResetPasswordRequest()
    request.InstanceId = instance_id
    for name, value in fields.items():
        setattr(request, name, value)
    task_id: int = client.ResetPassword(request).TaskId
    return task_id


def task_info(client: redis_client.RedisClient, task_id: int) -> Any:
    request = models.DescribeTaskInfoRequest()
    request.TaskId = task_id
    return client.DescribeTaskInfo(request)


def wait_task(
    client: redis_client.RedisClient,
    task_id: int,
    *,
    timeout: float = 30.0,
    until: tuple[str, ...] = ("succeed", "failed"),
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        info = task_info(client, task_id)
        if info.Status in until:
            return info
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} still {info.Status} after {timeout}s")
        time.sleep(0.02)


def code_of(call: Callable[[], object]) -> str:
    """The Tencent error code ``call`` fails with (it must fail)."""
    with pytest.raises(TencentCloudSDKException) as caught:
        call()
    return str(caught.value.get_code())
