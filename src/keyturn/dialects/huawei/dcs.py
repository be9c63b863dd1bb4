"""Huawei Cloud Distributed Cache Service for Redis (DCS API v2): password reset and change, and
the instance and job reads the SDK pairs with them.

``reset_password`` resets the ``default`` user (or makes the instance password-free) and, like
DCS, answers only once every node has the new credential; ``update_password`` first proves the
old password and is locked for 5 minutes after 5 wrong ones, as DCS documents. Job ids are
keyturn task ids. Read calls report what keyturn knows of the user's own servers; fields with no
meaning here keep neutral values of the SDK model's types.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any

from keyturn.core import errors as e
from keyturn.core.model import Instance, Product
from keyturn.core.passwords import HUAWEI_DCS
from keyturn.core.secrets import Secret
from keyturn.core.store_ports import Page
from keyturn.core.tasks import Task, TaskKind, TaskState
from keyturn.dialects.huawei.envelope import Body, Query, invalid
from keyturn.dialects.huawei.errors import HuaweiCode
from keyturn.dialects.huawei.product import Call, HuaweiProduct, Route
from keyturn.dialects.huawei.signing import query_pairs
from keyturn.service.accounts import ChangeResult
from keyturn.service.context import Answer, Caller
from keyturn.service.facade import Services

#: IAM's action for changing an instance's password (reset or change).
MODIFY_AUTH = "dcs:instance:modifyAuthInfo"

#: The Redis user DCS's instance password belongs to.
DEFAULT_USER = "default"

#: The reset API's one success body (the seed's example, byte for byte in meaning): the lock
#: fields are deprecated for resets and always report "no lock, 5 attempts".
RESET_OK: dict[str, Any] = {
    "lock_time": "0",
    "lock_time_left": "0",
    "retry_times_left": "5",
    "code": "1",
    "message": "success",
    "ext_message": None,
}

_CHANGE_MESSAGES = {
    ChangeResult.SUCCESS: "Modify DCSInstance password success.",
    ChangeResult.PASSWORD_FAILED: "The old password is incorrect.",
    ChangeResult.LOCKED: "instance is locked",
}

_JOB_STATUS = {
    TaskState.PREPARING: "INIT",
    TaskState.RUNNING: "RUNNING",
    TaskState.SUCCEED: "SUCCESS",
    TaskState.FAILED: "FAILED",
}
_JOB_TYPES = {
    TaskKind.RESET_PASSWORD: "resetPassword",
    TaskKind.SET_PASSWORD_FREE: "resetPasswordFree",
}

#: ``list_instances`` page size: DCS's default and maximum.
DEFAULT_LIMIT, MAX_LIMIT = 10, 1000
#: Page size used to scan the inventory when a filter keyturn cannot push down is given.
_SCAN_PAGE = 1000
#: The only status keyturn reports: it does not track instance lifecycles.
RUNNING = "RUNNING"


class InvalidInstanceId(e.InvalidParameterValue):
    """Invalid instance ID format."""

    code = "InvalidInstanceId"


def _instance_id(call: Call) -> str:
    instance_id = call.params["instance_id"]
    if not Product.HUAWEI_DCS.id_pattern.match(instance_id):
        raise InvalidInstanceId("Invalid instance ID format.")
    return instance_id


async def reset_password(services: Services, caller: Caller, call: Call) -> Answer:
    instance_id = _instance_id(call)
    body = Body.parse(call.request)
    password_free = body.boolean("no_password_access", False)
    new_password = body.string("new_password")
    secret: Secret | None = None
    if not password_free:
        if not new_password:
            raise e.PasswordEmpty(invalid("new_password"))
        secret = Secret(new_password)
    task = await services.resets.reset_password_and_wait(
        caller,
        product=Product.HUAWEI_DCS,
        instance_id=instance_id,
        account=DEFAULT_USER,
        password=secret,
        policy=HUAWEI_DCS,
        differ_from_current=True,
    )
    return Answer(dict(RESET_OK), task_id=task.id)


async def update_password(services: Services, caller: Caller, call: Call) -> Answer:
    instance_id = _instance_id(call)
    body = Body.parse(call.request)
    old, new = body.string("old_password"), body.string("new_password")
    if not old:
        raise e.MissingParameter(invalid("old_password"))
    if not new:
        raise e.PasswordEmpty(invalid("new_password"))
    outcome = await services.accounts.change_password(
        caller,
        product=Product.HUAWEI_DCS,
        instance_id=instance_id,
        account=DEFAULT_USER,
        old=Secret(old),
        new=Secret(new),
        policy=HUAWEI_DCS,
        differ_from_current=True,
    )
    return Answer(
        {
            "lock_time": str(outcome.lock_minutes),
            "result": str(outcome.result),
            "lock_time_left": str(outcome.lock_minutes_left),
            "retry_times_left": str(outcome.retries_left),
            "message": _CHANGE_MESSAGES[outcome.result],
        }
    )


async def show_instance(services: Services, caller: Caller, call: Call) -> Answer:
    instance = await services.queries.instance(caller, Product.HUAWEI_DCS, _instance_id(call))
    return Answer(_instance(instance))


async def list_instances(services: Services, caller: Caller, call: Call) -> Answer:
    query = Query(query_pairs(call.request.query))
    offset = query.integer("offset", 0, minimum=0, maximum=2**31)
    limit = query.integer("limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
    instance_id = query.string("instance_id")
    ids = [instance_id] if instance_id else None
    name, exact = query.string("name"), query.string("name_equal") == "true"
    ip, status = query.string("ip"), query.string("status")
    if status is not None and status != RUNNING:
        return Answer({"instance_num": 0, "instances": []})
    if name is None and ip is None:
        found, total = await services.queries.instances(
            caller,
            product=Product.HUAWEI_DCS,
            instance_ids=ids,
            page=Page(limit=limit, offset=offset),
        )
        return Answer({"instance_num": total, "instances": [_listed(i) for i in found]})
    # Name and address filters are not store queries: scan the caller's inventory.
    matches = [
        instance
        for instance in await _every_instance(services, caller, ids)
        if _name_matches(instance, name, exact) and (ip is None or _ip(instance) == ip)
    ]
    window = matches[offset : offset + limit]
    return Answer({"instance_num": len(matches), "instances": [_listed(i) for i in window]})


async def show_job_info(services: Services, caller: Caller, call: Call) -> Answer:
    job_id = call.params["job_id"]
    # Job ids are keyturn task ids; anything else names no job (and is never parsed further).
    if not job_id.isascii() or not job_id.isdigit() or len(job_id) > 18:
        raise e.TaskNotFound(f"The job {job_id[:64]} does not exist.")
    task = await services.queries.task(caller, int(job_id))
    return Answer(_job(task))


async def _every_instance(
    services: Services, caller: Caller, ids: list[str] | None
) -> list[Instance]:
    found: list[Instance] = []
    while True:
        batch, total = await services.queries.instances(
            caller,
            product=Product.HUAWEI_DCS,
            instance_ids=ids,
            page=Page(limit=_SCAN_PAGE, offset=len(found)),
        )
        found.extend(batch)
        if not batch or len(found) >= total:
            return found


def _name_matches(instance: Instance, name: str | None, exact: bool) -> bool:
    if name is None:
        return True
    shown = _name(instance)
    return shown == name if exact else name in shown


def _name(instance: Instance) -> str:
    return instance.name or instance.id


def _ip(instance: Instance) -> str:
    return instance.primary.address.host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _common(instance: Instance) -> dict[str, Any]:
    """Fields ``show_instance`` and ``list_instances`` share, typed as the SDK models say."""
    host = _ip(instance)
    return {
        "instance_id": instance.id,
        "name": _name(instance),
        "engine": "Redis",
        "engine_version": instance.engine_version or "",
        "status": RUNNING,
        "ip": host,
        "port": instance.primary.address.port,
        "domain_name": "" if _is_ip(host) else host,
        "no_password_access": "true" if instance.no_auth else "false",
        "access_user": DEFAULT_USER,
        "capacity": 0,
        "capacity_minor": "",
        "max_memory": 0,
        "used_memory": 0,
        "enable_ssl": any(node.address.tls for node in instance.nodes),
        "enable_publicip": False,
        "charging_mode": 0,
        "created_at": _time(instance.created_at),
        "description": "",
        "spec_code": "",
        "az_codes": [],
        "tags": [],
        "sub_status": "normal",
        "service_upgrade": False,
        "features": {"support_acl": True},
    }


def _instance(instance: Instance) -> dict[str, Any]:
    return {
        **_common(instance),
        "cache_mode": "single" if len(instance.nodes) == 1 else "ha",
        "replica_count": len(instance.nodes),
        "sharding_count": 1,
        "available_zones": [],
        "product_type": "generic",
        "update_at": _time(instance.created_at),
    }


def _listed(instance: Instance) -> dict[str, Any]:
    return {**_common(instance), "updated_at": _time(instance.created_at)}


def _job(task: Task) -> dict[str, Any]:
    return {
        "job_id": str(task.id),
        "job_type": _JOB_TYPES.get(task.kind, "resetPassword"),  # overlap halves: a reset
        "status": _JOB_STATUS[task.state],
        "begin_time": _time(task.started_at or task.created_at),
        "end_time": _time(task.finished_at),
        "fail_reason": task.message if task.state is TaskState.FAILED else "",
    }


def _time(moment: datetime | None) -> str:
    """DCS's timestamps: UTC, ISO 8601 with milliseconds (``2024-04-16T09:53:41.000Z``)."""
    if moment is None:
        return ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


PRODUCT = HuaweiProduct(
    name="dcs",
    routes=(
        Route(
            "POST",
            "/v2/{project_id}/instances/{instance_id}/password/reset",
            reset_password,
            action=MODIFY_AUTH,
            neutral="reset_password",
        ),
        Route(
            "PUT",
            "/v2/{project_id}/instances/{instance_id}/password",
            update_password,
            action=MODIFY_AUTH,
            neutral="change_password",
        ),
        Route("GET", "/v2/{project_id}/instances/{instance_id}", show_instance, "dcs:instance:get"),
        Route("GET", "/v2/{project_id}/instances", list_instances, "dcs:instance:list"),
        Route("GET", "/v2/{project_id}/jobs/{job_id}", show_job_info, "dcs:instance:get"),
    ),
    codes={
        InvalidInstanceId: HuaweiCode("111400061", 400),
        e.PasswordEmpty: HuaweiCode("111400063", 400),
        e.PasswordPolicyViolation: HuaweiCode("111400019", 400),
        e.PasswordReused: HuaweiCode("111400019", 400),
        e.OldPasswordMismatch: HuaweiCode("111400080", 400),
        e.PasswordFreeDenied: HuaweiCode("DCS.4839", 400),
        e.InstanceNotFound: HuaweiCode("111404022", 404),
        e.OperationInProgress: HuaweiCode("111400115", 400),
        # The instance password is the one keyturn logs in with: the code DCS answers when the
        # instance does not allow the operation (as every Conflict), named here on purpose.
        e.ProtectedAccount: HuaweiCode("111400026", 400),
        e.OperationTimedOut: HuaweiCode("111400115", 400),
    },
)
