"""Official Tencent Cloud SDK clients pointed at a keyturn server, and task polling."""

from __future__ import annotations

import time
from typing import Any

from tencentcloud.common import credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.redis.v20180412 import models, redis_client

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
