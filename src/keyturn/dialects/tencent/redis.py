"""TencentDB for Redis (API 2018-04-12): ResetPassword and its companions.

``ResetPassword`` resets the ``default`` user (Tencent's "root" account) or switches the
instance to password-free mode, asynchronously: it answers with a ``TaskId`` that
``DescribeTaskInfo`` and ``DescribeTaskList`` follow. The read calls report what keyturn knows
of the user's own servers; fields with no meaning here keep the SDK's neutral values. A Redis
Cluster is ``ProductType`` ``cluster`` with its ``Type`` (e.g. 18, Redis 7.0 cluster), and its
shard and replica counts as the cluster reports them now (left out if it cannot be read).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from keyturn.core import errors as e
from keyturn.core.model import Instance, Product
from keyturn.core.passwords import TENCENT_REDIS
from keyturn.core.secrets import Secret
from keyturn.core.store_ports import Page
from keyturn.core.tasks import Task, TaskState
from keyturn.dialects.tencent.common import app_id, decrypted, get_public_key
from keyturn.dialects.tencent.params import Params
from keyturn.dialects.tencent.product import TencentProduct
from keyturn.service.context import Answer, Caller
from keyturn.service.facade import Services
from keyturn.service.layouts import Layout

#: The Redis user that Tencent's ResetPassword changes; Tencent calls it the "root" account.
DEFAULT_USER = "default"
ROOT_ACCOUNT = "root"

#: Tencent's numeric region ids for the regions that have one (others report 0).
REGION_IDS = {
    "ap-guangzhou": 1,
    "ap-shanghai": 4,
    "ap-hongkong": 5,
    "na-toronto": 6,
    "ap-shanghai-fsi": 7,
    "ap-beijing": 8,
    "ap-singapore": 9,
    "ap-shenzhen-fsi": 11,
    "ap-guangzhou-open": 12,
    "na-siliconvalley": 15,
    "ap-chengdu": 16,
    "eu-frankfurt": 17,
    "ap-seoul": 18,
    "ap-chongqing": 19,
    "ap-mumbai": 21,
    "na-ashburn": 22,
    "ap-bangkok": 23,
    "eu-moscow": 24,
    "ap-tokyo": 25,
    "ap-nanjing": 33,
    "ap-jakarta": 72,
    "sa-saopaulo": 74,
}

_RESULT_CODES = {
    TaskState.PREPARING: 0,
    TaskState.RUNNING: 1,
    TaskState.SUCCEED: 2,
    TaskState.FAILED: 4,
}
TASK_TYPE = "FLOW_SETPWD"

#: ``InstanceSet.Type`` by Redis major version: (standard architecture, cluster architecture).
#: Tencent numbers 2.8, 4.0, 5.0, 6.2 and 7.0; other versions report no ``Type``.
_TYPES = {2: (2, None), 4: (6, 7), 5: (8, 9), 6: (15, 16), 7: (17, 18)}


async def reset_password(services: Services, caller: Caller, params: Params) -> Answer:
    instance_id = params.required_string("InstanceId")
    no_auth = params.boolean("NoAuth", False)
    encrypted = params.boolean("EncryptPassword", False)
    password = params.string("Password")
    secret: Secret | None = None
    if not no_auth:
        if not password:
            raise e.PasswordEmpty("Password is required unless NoAuth is true.")
        # EncryptPassword=true: Password is base64 RSA ciphertext made with GetPublicKey's key.
        secret = await decrypted(services, caller, password) if encrypted else Secret(password)
    task = await services.resets.reset_password(
        caller,
        product=Product.TENCENT_REDIS,
        instance_id=instance_id,
        account=DEFAULT_USER,
        password=secret,
        policy=TENCENT_REDIS,
    )
    return Answer({"TaskId": task.id}, task_id=task.id)


async def describe_task_info(services: Services, caller: Caller, params: Params) -> Answer:
    task = await services.queries.task(caller, params.integer("TaskId", -1, minimum=-1))
    return Answer(
        {
            "Status": str(task.state),
            "StartTime": _time(task.started_at or task.created_at),
            "TaskType": TASK_TYPE,
            "InstanceId": task.instance_id,
            "TaskMessage": task.message,
        }
    )


async def describe_task_list(services: Services, caller: Caller, params: Params) -> Answer:
    page = Page(
        limit=params.integer("Limit", 20, minimum=1, maximum=100),
        offset=params.integer("Offset", 0),
    )
    instance_id = params.string("InstanceId") or None
    tasks, total = await services.queries.tasks(caller, instance_id=instance_id, page=page)
    names = await _instance_names(services, caller, tasks)
    return Answer(
        {
            "TotalCount": total,
            "Tasks": [
                {
                    "TaskId": task.id,
                    "StartTime": _time(task.started_at or task.created_at),
                    "TaskType": TASK_TYPE,
                    "InstanceName": names.get(task.instance_id, ""),
                    "InstanceId": task.instance_id,
                    "ProjectId": 0,
                    "Progress": 100.0 if task.state.final else 0.0,
                    "EndTime": _time(task.finished_at),
                    "Result": _RESULT_CODES[task.state],
                }
                for task in tasks
            ],
        }
    )


async def describe_instances(services: Services, caller: Caller, params: Params) -> Answer:
    page = Page(
        limit=params.integer("Limit", 20, minimum=1, maximum=1000),
        offset=params.integer("Offset", 0),
    )
    ids = params.string_list("InstanceIds") or []
    single = params.string("InstanceId")
    if single:
        ids.append(single)
    instances, total = await services.queries.instances(
        caller, product=Product.TENCENT_REDIS, instance_ids=ids or None, page=page
    )
    layouts = await services.queries.layouts(instances)
    return Answer(
        {"TotalCount": total, "InstanceSet": [_instance(i, layouts[i.id]) for i in instances]}
    )


async def describe_instance_account(services: Services, caller: Caller, params: Params) -> Answer:
    instance = await services.queries.instance(
        caller, Product.TENCENT_REDIS, params.required_string("InstanceId")
    )
    limit = params.integer("Limit", 20, minimum=1, maximum=100)
    offset = params.integer("Offset", 0)
    accounts = await services.queries.accounts(caller, instance)
    window = accounts[offset : offset + limit]
    return Answer(
        {
            "TotalCount": len(accounts),
            "Accounts": [
                {
                    "InstanceId": instance.id,
                    "AccountName": ROOT_ACCOUNT if account.name == DEFAULT_USER else account.name,
                    "Remark": "",
                    "Privilege": account.privilege,
                    "ReadonlyPolicy": ["master"],
                    "Status": 2 if account.enabled else 4,
                    "CreateTime": "",
                    "PasswordLastModifiedTime": "",
                }
                for account in window
            ],
        }
    )


async def _instance_names(services: Services, caller: Caller, tasks: list[Task]) -> dict[str, str]:
    ids = sorted({task.instance_id for task in tasks})
    if not ids:
        return {}
    instances, _ = await services.queries.instances(
        caller, product=Product.TENCENT_REDIS, instance_ids=ids, page=Page(limit=len(ids))
    )
    return {i.id: i.name for i in instances}


def _instance(instance: Instance, layout: Layout | None) -> dict[str, Any]:
    primary = instance.primary.address
    shape: dict[str, Any] = {}
    if layout is not None:
        shape = {"RedisShardNum": layout.shards, "RedisReplicasNum": layout.replicas}
    kind = _type(instance)
    return {
        "InstanceName": instance.name or instance.id,
        "InstanceId": instance.id,
        "Appid": app_id(instance.tenant_id),
        "ProjectId": 0,
        "RegionId": REGION_IDS.get(instance.region, 0),
        "ZoneId": 0,
        "Status": 2,
        "WanIp": primary.host,
        "Port": primary.port,
        "Createtime": _time(instance.created_at),
        "Engine": "Redis",
        "ProductType": "cluster" if instance.cluster else "standalone",
        **({"Type": kind} if kind is not None else {}),
        "InstanceTitle": "running",
        "NoAuth": bool(instance.no_auth),
        **shape,
        "Region": instance.region,
        "CurrentRedisVersion": instance.engine_version or "",
    }


def _type(instance: Instance) -> int | None:
    """Tencent's instance type for the Redis version keyturn last saw, if Tencent has one."""
    major = (instance.engine_version or "").split(".", 1)[0]
    types = _TYPES.get(int(major)) if major.isdigit() else None
    if types is None:
        return None
    return types[1] if instance.cluster else types[0]


def _time(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


PRODUCT = TencentProduct(
    service="redis",
    version="2018-04-12",
    instance_param="InstanceId",
    changes={"ResetPassword": "reset_password"},
    actions={
        "ResetPassword": reset_password,
        "DescribeTaskInfo": describe_task_info,
        "DescribeTaskList": describe_task_list,
        "DescribeInstances": describe_instances,
        "DescribeInstanceAccount": describe_instance_account,
        "GetPublicKey": get_public_key,
    },
    codes={
        e.PasswordEmpty: "InvalidParameterValue.PasswordEmpty",
        e.PasswordPolicyViolation: "InvalidParameterValue.PasswordRuleError",
        e.PasswordFreeDenied: "InvalidParameterValue.PasswordFreeDenied",
        # ResetPassword documents one denial that is not about the key's CAM policy (keyturn
        # answers those with AuthFailure.UnauthorizedOperation): "The API has no CAM
        # permissions". An instance whose password keyturn logs in with is not the key's to
        # reset: the same, final, non-retryable refusal.
        e.ProtectedAccount: "InvalidParameter.PermissionDenied",
        e.UnsupportedFeature: "FailedOperation.UnSupportError",
        e.InstanceNotFound: "ResourceNotFound.InstanceNotExists",
        e.TaskNotFound: "ResourceNotFound",
        e.OperationInProgress: "ResourceUnavailable.InstanceLockedError",
        e.EngineError: "ResourceUnavailable.InstanceStatusAbnormal",
    },
)
