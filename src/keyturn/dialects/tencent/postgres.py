"""TencentDB for PostgreSQL (API 2017-03-12): ResetAccountPassword and its companions.

Unlike Redis's, this reset is synchronous at the vendor: the answer (only a ``RequestId``) comes
once the new password is verified by a real login on every node, or as an error after the
previous password was restored. The task behind it is still durable and shows in
``DescribeTasks``. Read calls report what keyturn knows of the user's own servers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from keyturn.core import errors as e
from keyturn.core.model import Instance, Product
from keyturn.core.passwords import TENCENT_POSTGRES
from keyturn.core.secrets import Secret
from keyturn.core.store_ports import Page
from keyturn.core.tasks import Task, TaskState
from keyturn.dialects.tencent.common import app_id, get_public_key
from keyturn.dialects.tencent.params import Params, named_accounts
from keyturn.dialects.tencent.product import TencentProduct
from keyturn.service.context import Answer, Caller
from keyturn.service.facade import Services

_TASK_STATUS = {
    TaskState.PREPARING: "Running",
    TaskState.RUNNING: "Running",
    TaskState.SUCCEED: "Success",
    TaskState.FAILED: "Fail",
}


async def reset_account_password(services: Services, caller: Caller, params: Params) -> Answer:
    instance_id = params.required_string("DBInstanceId")
    user = params.required_string("UserName")
    password = params.string("Password", required=True) or ""
    task = await services.resets.reset_password_and_wait(
        caller,
        product=Product.TENCENT_POSTGRES,
        instance_id=instance_id,
        account=user,
        password=Secret(password),
        policy=TENCENT_POSTGRES,
    )
    return Answer({}, task_id=task.id)


async def describe_accounts(services: Services, caller: Caller, params: Params) -> Answer:
    instance = await services.queries.instance(
        caller, Product.TENCENT_POSTGRES, params.required_string("DBInstanceId")
    )
    limit = params.integer("Limit", 20, minimum=1, maximum=100)
    offset = params.integer("Offset", 0)
    descending = (params.string("OrderByType") or "asc").lower() == "desc"
    accounts = sorted(
        await services.queries.accounts(caller, instance),
        key=lambda a: a.name,
        reverse=descending,
    )
    return Answer(
        {
            "TotalCount": len(accounts),
            "Details": [
                {
                    "DBInstanceId": instance.id,
                    "UserName": account.name,
                    "Remark": "",
                    "Status": 2 if account.enabled else 5,
                    "CreateTime": "",
                    "UpdateTime": "",
                    "UserType": "normal",
                }
                for account in accounts[offset : offset + limit]
            ],
        }
    )


async def describe_db_instances(services: Services, caller: Caller, params: Params) -> Answer:
    page = Page(
        limit=params.integer("Limit", 10, minimum=1, maximum=100),
        offset=params.integer("Offset", 0),
    )
    ids = _instance_id_filter(params)
    instances, total = await services.queries.instances(
        caller, product=Product.TENCENT_POSTGRES, instance_ids=ids, page=page
    )
    return Answer({"TotalCount": total, "DBInstanceSet": [_instance(i) for i in instances]})


async def describe_db_instance_attribute(
    services: Services, caller: Caller, params: Params
) -> Answer:
    instance = await services.queries.instance(
        caller, Product.TENCENT_POSTGRES, params.required_string("DBInstanceId")
    )
    return Answer({"DBInstance": _instance(instance)})


async def describe_tasks(services: Services, caller: Caller, params: Params) -> Answer:
    limit = params.integer("Limit", 20, minimum=1, maximum=100)
    offset = params.integer("Offset", 0)
    if "TaskId" in params:
        try:
            found = [await services.queries.task(caller, params.integer("TaskId", 0))]
        except e.TaskNotFound:
            found = []
        tasks, total = found, len(found)
    else:
        tasks, total = await services.queries.tasks(
            caller,
            instance_id=params.string("DBInstanceId") or None,
            page=Page(limit=limit, offset=offset),
        )
    return Answer({"TotalCount": total, "TaskSet": [_task(t) for t in tasks]})


def _instance_id_filter(params: Params) -> list[str] | None:
    """``Filters=[{"Name": "db-instance-id", "Values": [...]}]``; other filters are refused
    rather than ignored, so a caller never mistakes an unfiltered list for a filtered one."""
    raw = params.raw("Filters")
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise e.InvalidParameter("The parameter `Filters` must be an Array of Filter.")
    ids: list[str] = []
    for item in raw:
        if not isinstance(item, dict):
            raise e.InvalidParameter("The parameter `Filters` must be an Array of Filter.")
        name, values = item.get("Name"), item.get("Values")
        if name != "db-instance-id":
            raise e.InvalidParameterValue(f"The filter `{name}` is not supported.")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise e.InvalidParameter("A filter's `Values` must be an Array of String.")
        ids.extend(values)
    return ids


def _instance(instance: Instance) -> dict[str, Any]:
    primary = instance.primary.address
    version = instance.engine_version or ""
    return {
        "Region": instance.region,
        "Zone": "",
        "DBInstanceId": instance.id,
        "DBInstanceName": instance.name or instance.id,
        "DBInstanceStatus": "running",
        "DBMajorVersion": version.split(".", 1)[0],
        "DBVersion": version,
        "DBInstanceType": "primary",
        "DBCharset": "UTF8",
        "CreateTime": _time(instance.created_at),
        "DBInstanceNetInfo": [
            {
                "Address": primary.host,
                "Ip": primary.host,
                "Port": primary.port,
                "NetType": "private",
                "Status": "opened",
                "ProtocolType": "postgresql",
            }
        ],
        "AppId": app_id(instance.tenant_id),
        "ProjectId": 0,
        "DBEngine": "postgresql",
    }


def _task(task: Task) -> dict[str, Any]:
    return {
        "TaskId": task.id,
        "TaskType": "ResetAccountPassword",
        "DBInstanceId": task.instance_id,
        "StartTime": _time(task.started_at or task.created_at),
        "EndTime": _time(task.finished_at),
        "Status": _TASK_STATUS[task.state],
        "Progress": 100 if task.state.final else 0,
    }


def _time(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


PRODUCT = TencentProduct(
    service="postgres",
    version="2017-03-12",
    instance_param="DBInstanceId",
    changes={"ResetAccountPassword": "reset_password"},
    accounts={"ResetAccountPassword": lambda params: named_accounts(params, "UserName")},
    actions={
        "ResetAccountPassword": reset_account_password,
        "DescribeAccounts": describe_accounts,
        "DescribeDBInstances": describe_db_instances,
        "DescribeDBInstanceAttribute": describe_db_instance_attribute,
        "DescribeTasks": describe_tasks,
        "GetPublicKey": get_public_key,
    },
    codes={
        e.InstanceNotFound: "InvalidParameterValue.InstanceNotExist",
        e.AccountNotFound: "InvalidParameterValue.AccountNotExistError",
        e.AccountCannotLogin: "FailedOperation.InvalidAccountStatus",
        e.AccountPermissionDenied: "OperationDenied.AccountOperationDenied",
        e.ProtectedAccount: "OperationDenied.AccountOperationDenied",
        e.PasswordLengthViolation: "InvalidParameterValue.InvalidPasswordLengthError",
        e.PasswordCompositionViolation: "InvalidParameterValue.InvalidPasswordValueError",
        e.PasswordPolicyViolation: "InvalidParameterValue.InvalidPasswordFormat",
        e.OperationInProgress: "OperationDenied.InstanceStatusLimitError",
        e.EngineUnavailable: "InvalidInstanceStatus",
        e.EngineError: "FailedOperation.FailedOperationError",
    },
)
