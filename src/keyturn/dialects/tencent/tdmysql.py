"""TDSQL MySQL (tdmysql 2021-11-22): ResetUserPassword, the SDK's batch ResetUsersPassword and
their companions, on user@host accounts of MySQL/MariaDB servers.

The seed document's flat ``ResetUserPassword`` (reachable with ``CommonClient``) and the SDK's
``ResetUsersPassword`` (``Users[]``, answering a ``FlowId``) are both served, synchronously:
the answer comes once every new password logs in. A batch first checks every entry (rules,
decryption, the account on the engine) so that a bad entry changes nothing. The engine's super
users and the account keyturn itself administers the instance with are refused, as TDSQL does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from keyturn.core import errors as e
from keyturn.core.model import Instance, Product
from keyturn.core.passwords import TENCENT_TDMYSQL
from keyturn.core.secrets import Secret
from keyturn.core.store_ports import Page
from keyturn.core.tasks import TaskState
from keyturn.dialects.tencent.common import decrypted, get_public_key
from keyturn.dialects.tencent.params import Params
from keyturn.dialects.tencent.product import TencentProduct
from keyturn.service.context import Answer, Caller
from keyturn.service.facade import Services

#: Accounts this API never resets (TDSQL's "super users"); keyturn's admin is added per node.
SUPER_USERS = frozenset({"root", "mysql.sys", "mysql.session", "mysql.infoschema", "mariadb.sys"})
_FLOW_STATUS = {
    TaskState.PREPARING: "running",
    TaskState.RUNNING: "running",
    TaskState.SUCCEED: "success",
    TaskState.FAILED: "failed",
}


class SuperUserDenied(e.RequestError):
    """The engine's super users and keyturn's own admin account cannot be reset here."""

    code = "SuperUserDenied"


async def reset_user_password(services: Services, caller: Caller, params: Params) -> Answer:
    instance_id = params.required_string("InstanceId")
    entry = await _entry(services, caller, params)
    task_id = await _reset(services, caller, instance_id, [entry])
    return Answer({}, task_id=task_id)


async def reset_users_password(services: Services, caller: Caller, params: Params) -> Answer:
    instance_id = params.required_string("InstanceId")
    users = params.raw("Users")
    if not isinstance(users, list) or not users:
        raise e.MissingParameter("The parameter `Users` is missing or empty.")
    if len(users) > 100:
        raise e.InvalidParameterValue("At most 100 users can be reset at once.")
    entries = []
    for n, user in enumerate(users):
        if not isinstance(user, dict):
            raise e.InvalidParameter(f"The parameter `Users.{n}` must be an object.")
        entries.append(await _entry(services, caller, Params(user), f"Users.{n}."))
    accounts = [account for account, _ in entries]
    if len(set(accounts)) != len(accounts):
        raise e.InvalidParameterValue("The same user@host appears twice in `Users`.")
    flow_id = await _reset(services, caller, instance_id, entries)
    return Answer({"FlowId": flow_id}, task_id=flow_id)


async def _entry(
    services: Services, caller: Caller, params: Params, prefix: str = ""
) -> tuple[str, Secret]:
    user = _named(params, "UserName", prefix)
    host = _named(params, "Host", prefix)
    plain, encrypted = params.string("Password"), params.string("EncryptedPassword")
    if encrypted:
        password = await decrypted(services, caller, encrypted)
    elif plain:
        password = Secret(plain)
    else:
        raise e.MissingParameter(
            f"The parameter `{prefix}Password` or `{prefix}EncryptedPassword` is missing."
        )
    TENCENT_TDMYSQL.check(password.reveal())
    return f"{user}@{host}", password


def _user_at_host(params: Params) -> tuple[str, ...]:
    """The account a ResetUserPassword names (``user@host``), for policies; () if unreadable."""
    user, host = params.raw("UserName"), params.raw("Host")
    return (f"{user}@{host}",) if isinstance(user, str) and isinstance(host, str) else ()


def _users_at_hosts(params: Params) -> tuple[str, ...]:
    """Every account a ResetUsersPassword batch names, for policies."""
    users = params.raw("Users")
    if not isinstance(users, list):
        return ()
    return tuple(a for u in users if isinstance(u, dict) for a in _user_at_host(Params(u)))


def _named(params: Params, name: str, prefix: str) -> str:
    value = params.string(name)
    if not value:
        raise e.MissingParameter(f"The parameter `{prefix}{name}` is missing.")
    return value


async def _reset(
    services: Services, caller: Caller, instance_id: str, entries: list[tuple[str, Secret]]
) -> int:
    instance = await services.queries.instance(caller, Product.TENCENT_TDMYSQL, instance_id)
    admins = {node.address.username for node in instance.nodes}
    for account, _ in entries:
        user = account.rsplit("@", 1)[0]
        if user in SUPER_USERS or user in admins:
            raise SuperUserDenied(f"The account {user!r} is a super user and cannot be reset here.")
    if len(entries) > 1:
        # A batch checks every account first, so one bad entry changes nothing; a single
        # account meets the same checks in its own reset before anything changes (a second
        # round of the same engine round trips otherwise).
        await services.resets.check_accounts(
            caller,
            product=Product.TENCENT_TDMYSQL,
            instance_id=instance_id,
            accounts=[account for account, _ in entries],
        )
    first: int | None = None
    for account, password in entries:
        task = await services.resets.reset_password_and_wait(
            caller,
            product=Product.TENCENT_TDMYSQL,
            instance_id=instance_id,
            account=account,
            password=password,
            policy=TENCENT_TDMYSQL,
        )
        first = task.id if first is None else first
    assert first is not None
    return first


async def describe_users(services: Services, caller: Caller, params: Params) -> Answer:
    instance = await services.queries.instance(
        caller, Product.TENCENT_TDMYSQL, params.required_string("InstanceId")
    )
    users = []
    for account in await services.queries.accounts(caller, instance):
        user, _, host = account.name.rpartition("@")
        users.append(
            {"UserName": user, "Host": host, "Description": "", "CreateTime": "", "UpdateTime": ""}
        )
    return Answer({"Users": users})


async def describe_flow(services: Services, caller: Caller, params: Params) -> Answer:
    try:
        task = await services.queries.task(caller, params.integer("FlowId", 0))
    except e.TaskNotFound:
        raise e.InvalidParameterValue("The flow does not exist.") from None
    return Answer({"Status": _FLOW_STATUS[task.state]})


async def describe_db_instances(services: Services, caller: Caller, params: Params) -> Answer:
    page = Page(
        limit=params.integer("Limit", 20, minimum=1, maximum=100),
        offset=params.integer("Offset", 0),
    )
    ids: list[str] | None = None
    filters = params.raw("Filters")
    if filters is not None:
        if not isinstance(filters, list) or not all(isinstance(f, dict) for f in filters):
            raise e.InvalidParameter("The parameter `Filters` must be an Array of InstanceFilter.")
        ids = []
        for item in filters:
            if item.get("Name") != "InstanceId" or not isinstance(item.get("Values"), list):
                raise e.InvalidParameterValue(f"The filter `{item.get('Name')}` is not supported.")
            ids.extend(str(v) for v in item["Values"])
    instances, total = await services.queries.instances(
        caller, product=Product.TENCENT_TDMYSQL, instance_ids=ids, page=page
    )
    return Answer({"TotalCount": total, "Instances": [_instance(i) for i in instances]})


def _instance(instance: Instance) -> dict[str, Any]:
    primary = instance.primary.address
    return {
        "InstanceId": instance.id,
        "InstanceName": instance.name or instance.id,
        "Status": "running",
        "Vip": primary.host,
        "Vport": primary.port,
        "Region": instance.region,
        "Zone": "",
        "CreateTime": _time(instance.created_at),
    }


def _time(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


PRODUCT = TencentProduct(
    service="tdmysql",
    version="2021-11-22",
    instance_param="InstanceId",
    changes={"ResetUserPassword": "reset_password", "ResetUsersPassword": "reset_password"},
    accounts={"ResetUserPassword": _user_at_host, "ResetUsersPassword": _users_at_hosts},
    actions={
        "ResetUserPassword": reset_user_password,
        "ResetUsersPassword": reset_users_password,
        "DescribeUsers": describe_users,
        "DescribeFlow": describe_flow,
        "DescribeDBInstances": describe_db_instances,
        "GetPublicKey": get_public_key,
    },
    codes={
        e.InstanceNotFound: "ResourceNotFound.InstanceNotFound",
        e.AccountNotFound: "FailedOperation.QueryUserError",
        e.AccountLocked: "FailedOperation.DBUpdateUserError",
        e.AccountShadowed: "InvalidParameterValue.InvalidParameterValueError",
        e.PasswordPolicyViolation: "InvalidParameterValue.CheckPasswdError",
        SuperUserDenied: "OperationDenied.ResetUserPasswordError",
        e.ProtectedAccount: "OperationDenied.ResetUserPasswordError",
        e.OperationInProgress: "OperationDenied.InstanceStatusError",
        e.EngineUnavailable: "OperationDenied.InstanceStatusError",
        e.InvalidParameterValue: "InvalidParameterValue.InvalidParameterValueError",
        e.EngineError: "FailedOperation.DBUpdateUserError",
    },
)
