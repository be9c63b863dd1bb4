"""Alibaba Cloud Tair / ApsaraDB for Redis (R-kvstore 2015-01-01) on Redis ACL accounts.

``ResetAccountPassword``, ``ModifyAccountPassword`` and ``CreateAccount`` are synchronous, like
Alibaba's: they answer once the new credential logged in on every node, or with the error
behind a failure after everything was rolled back. Alibaba names an instance's default account
after the instance, so an ``AccountName`` equal to the ``InstanceId`` means the Redis user
``default``, and listings show ``default`` under the instance id. The read calls report what
keyturn knows of the user's own servers; fields without meaning here keep neutral values. A
Redis Cluster is ``ArchitectureType`` ``cluster`` with its ``ShardCount`` as the cluster
reports it now (left out if it cannot be read).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from keyturn.core import errors as e
from keyturn.core.engine_ports import AccountInfo
from keyturn.core.model import Instance, Product
from keyturn.core.passwords import ALIBABA_KVSTORE
from keyturn.core.secrets import Secret
from keyturn.core.store_ports import Page
from keyturn.dialects.alibaba.errors import AlibabaCode
from keyturn.dialects.alibaba.params import Params
from keyturn.dialects.alibaba.product import AlibabaProduct
from keyturn.service.accounts import ChangeResult
from keyturn.service.context import Answer, Caller
from keyturn.service.facade import Services
from keyturn.service.layouts import Layout

PRODUCT_ID = Product.ALIBABA_KVSTORE
DEFAULT_USER = "default"
#: Alibaba's account name rule: a lower-case letter, then lower-case letters, digits and
#: underscores, 100 characters at most.
_ACCOUNT_NAME = re.compile(r"[a-z][a-z0-9_]{0,99}")
READ_ONLY, READ_WRITE = "RoleReadOnly", "RoleReadWrite"
#: keyturn's privilege summary of an ACL user -> Alibaba's AccountPrivilege. ACL rules that
#: are neither of Alibaba's two roles are reported as RoleCustom.
_PRIVILEGES = {"rw": READ_WRITE, "r": READ_ONLY}
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 30
#: Keeps offsets (PageNumber - 1) * PageSize well inside the store's integer range.
MAX_PAGE_NUMBER = 1_000_000


def instance_id_of(params: Params) -> str:
    """The ``InstanceId``; a malformed one is as unknown as anyone else's instance."""
    instance_id = params.required("InstanceId")
    if not PRODUCT_ID.id_pattern.fullmatch(instance_id):
        raise e.InstanceNotFound()
    return instance_id


def account_of(name: str, instance_id: str) -> str:
    """The Redis user an ``AccountName`` designates, after Alibaba's name rule."""
    if name == instance_id:
        return DEFAULT_USER
    if not _ACCOUNT_NAME.fullmatch(name):
        raise e.InvalidAccountName(
            "it must start with a lower-case letter and hold at most 100 lower-case letters, "
            "digits and underscores."
        )
    return name


def display_name(account: str, instance_id: str) -> str:
    return instance_id if account == DEFAULT_USER else account


def password_of(params: Params, name: str) -> Secret:
    value = params.string(name)
    if not value:
        raise e.PasswordEmpty(f'The parameter "{name}" is required.')
    return Secret(value)


async def reset_account_password(services: Services, caller: Caller, params: Params) -> Answer:
    instance_id = instance_id_of(params)
    account = account_of(params.required("AccountName"), instance_id)
    task = await services.resets.reset_password_and_wait(
        caller,
        product=PRODUCT_ID,
        instance_id=instance_id,
        account=account,
        password=password_of(params, "AccountPassword"),
        policy=ALIBABA_KVSTORE,
    )
    return Answer({}, task_id=task.id)


async def modify_account_password(services: Services, caller: Caller, params: Params) -> Answer:
    instance_id = instance_id_of(params)
    account = account_of(params.required("AccountName"), instance_id)
    old = params.string("OldAccountPassword")
    if old is None:
        raise e.MissingParameter(
            'The input parameter "OldAccountPassword" that is mandatory for processing this '
            "request is not supplied."
        )
    outcome = await services.accounts.change_password(
        caller,
        product=PRODUCT_ID,
        instance_id=instance_id,
        account=account,
        old=Secret(old),
        new=password_of(params, "NewAccountPassword"),
        policy=ALIBABA_KVSTORE,
    )
    if outcome.result is ChangeResult.PASSWORD_FAILED:
        raise e.OldPasswordMismatch(
            "Specified OldAccountPassword is not the account's current password; "
            f"{outcome.retries_left} more wrong attempts lock password changes of this account."
        )
    if outcome.result is ChangeResult.LOCKED:
        raise e.PasswordChangeLocked(
            "Too many wrong old passwords: password changes of this account are locked for "
            f"{outcome.lock_minutes_left} more minutes. ResetAccountPassword still works."
        )
    return Answer({})


async def create_account(services: Services, caller: Caller, params: Params) -> Answer:
    instance_id = instance_id_of(params)
    name = params.required("AccountName")
    account = account_of(name, instance_id)
    privilege = params.choice("AccountPrivilege", (READ_ONLY, READ_WRITE), READ_WRITE)
    # Alibaba's API creates Normal accounts only; the description is accepted but keyturn
    # keeps no account records (the engine is the source of truth), so it is not stored.
    params.choice("AccountType", ("Normal",), "Normal")
    await services.accounts.create(
        caller,
        product=PRODUCT_ID,
        instance_id=instance_id,
        account=account,
        password=password_of(params, "AccountPassword"),
        policy=ALIBABA_KVSTORE,
        read_only=privilege == READ_ONLY,
    )
    return Answer({"InstanceId": instance_id, "AccountName": name, "AcountName": name})


async def describe_accounts(services: Services, caller: Caller, params: Params) -> Answer:
    instance = await services.queries.instance(caller, PRODUCT_ID, instance_id_of(params))
    page_number = params.integer("PageNumber", 1, minimum=1, maximum=MAX_PAGE_NUMBER)
    page_size = params.integer("PageSize", DEFAULT_PAGE_SIZE, minimum=1, maximum=MAX_PAGE_SIZE)
    wanted = params.string("AccountName") or None
    search = params.string("SearchAccountName") or ""
    accounts = [
        account
        for account in await services.queries.accounts(caller, instance)
        if (wanted is None or display_name(account.name, instance.id) == wanted)
        and search in display_name(account.name, instance.id)
    ]
    start = (page_number - 1) * page_size
    return Answer(
        {
            "PageNumber": page_number,
            "PageSize": page_size,
            "TotalCount": len(accounts),
            "Accounts": {
                "Account": [_account(a, instance) for a in accounts[start : start + page_size]]
            },
        }
    )


async def describe_instance_attribute(services: Services, caller: Caller, params: Params) -> Answer:
    instance = await services.queries.instance(caller, PRODUCT_ID, instance_id_of(params))
    layout = (await services.queries.layouts([instance]))[instance.id]
    return Answer(
        {"Instances": {"DBInstanceAttribute": [{**_instance(instance, layout), "Engine": "Redis"}]}}
    )


async def describe_instances(services: Services, caller: Caller, params: Params) -> Answer:
    page_number = params.integer("PageNumber", 1, minimum=1, maximum=MAX_PAGE_NUMBER)
    page_size = params.integer("PageSize", DEFAULT_PAGE_SIZE, minimum=1, maximum=MAX_PAGE_SIZE)
    ids = [i.strip() for i in (params.string("InstanceIds") or "").split(",") if i.strip()]
    if len(ids) > MAX_PAGE_SIZE:
        raise e.InvalidParameterValue(
            f'The parameter "InstanceIds" names more than {MAX_PAGE_SIZE} instances.'
        )
    instances, total = await services.queries.instances(
        caller,
        product=PRODUCT_ID,
        instance_ids=ids or None,
        page=Page(limit=page_size, offset=(page_number - 1) * page_size),
    )
    layouts = await services.queries.layouts(instances)
    return Answer(
        {
            "PageNumber": page_number,
            "PageSize": page_size,
            "TotalCount": total,
            "Instances": {"KVStoreInstance": [_instance(i, layouts[i.id]) for i in instances]},
        }
    )


def _account(account: AccountInfo, instance: Instance) -> dict[str, Any]:
    default = account.name == DEFAULT_USER
    return {
        "AccountName": display_name(account.name, instance.id),
        "AccountStatus": "Available" if account.enabled else "Unavailable",
        "AccountType": "Super" if default else "Normal",
        "AccountDescription": "",
        "InstanceId": instance.id,
        "DatabasePrivileges": {
            "DatabasePrivilege": [
                {"AccountPrivilege": _PRIVILEGES.get(account.privilege, "RoleCustom")}
            ]
        },
    }


def _instance(instance: Instance, layout: Layout | None) -> dict[str, Any]:
    primary = instance.primary.address
    replicas = layout.replicas if layout is not None else len(instance.nodes) - 1
    shards = {"ShardCount": layout.shards} if instance.cluster and layout is not None else {}
    return {
        "InstanceId": instance.id,
        "InstanceName": instance.name or instance.id,
        "InstanceStatus": "Normal",
        "InstanceType": "Redis",
        "EngineVersion": _major(instance.engine_version),
        "ArchitectureType": "cluster" if instance.cluster else "standard",
        **shards,
        "NodeType": "MASTER_SLAVE" if replicas > 0 else "STAND_ALONE",
        "ConnectionDomain": primary.host,
        "PrivateIp": primary.host,
        "Port": primary.port,
        "RegionId": instance.region,
        "ZoneId": "",
        "NetworkType": "CLASSIC",
        "ChargeType": "PostPaid",
        # "Open": clients must authenticate; "Close": password-free access is on.
        "VpcAuthMode": "Close" if instance.no_auth else "Open",
        "CreateTime": _time(instance.created_at),
    }


def _major(version: str | None) -> str:
    """``7.0.15`` -> ``7.0``, the form Alibaba reports; empty until keyturn has seen it."""
    return ".".join((version or "").split(".")[:2])


def _time(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else ""


_BAD_PASSWORD = "Specified AccountPassword is not valid: {detail}"

PRODUCT = AlibabaProduct(
    code="R-kvstore",
    version="2015-01-01",
    service="kvstore",
    changes={
        "ResetAccountPassword": "reset_password",
        "ModifyAccountPassword": "change_password",
        "CreateAccount": "create_account",
    },
    account_actions=frozenset({"ResetAccountPassword", "ModifyAccountPassword", "CreateAccount"}),
    actions={
        "ResetAccountPassword": reset_account_password,
        "ModifyAccountPassword": modify_account_password,
        "CreateAccount": create_account,
        "DescribeAccounts": describe_accounts,
        "DescribeInstanceAttribute": describe_instance_attribute,
        "DescribeInstances": describe_instances,
    },
    codes={
        e.PasswordEmpty: AlibabaCode("InvalidAccountPassword.Format", 400, _BAD_PASSWORD),
        e.PasswordPolicyViolation: AlibabaCode("InvalidAccountPassword.Format", 400, _BAD_PASSWORD),
        # A wrong old password is a password problem of its own kind: same family as the
        # documented .Format, another suffix, so a client can tell "retype the old one" from
        # "choose a stronger new one".
        e.OldPasswordMismatch: AlibabaCode("InvalidAccountPassword.Mismatch", 400),
        e.PasswordChangeLocked: AlibabaCode("Account.Locked", 403),
        e.InvalidAccountName: AlibabaCode(
            "InvalidAccountName.Format", 400, "Specified AccountName is not valid: {detail}"
        ),
        e.AccountNotFound: AlibabaCode(
            "InvalidAccountName.NotFound", 404, "Specified account does not exist."
        ),
        e.AccountExists: AlibabaCode(
            "InvalidAccountName.Duplicate",
            400,
            "Specified AccountName already exists in this instance.",
        ),
        e.AccountsUnsupported: AlibabaCode(
            "InvalidEngineVersion.Format",
            400,
            "Current EngineVersion does not support operations (Redis ACL accounts need 6.0 "
            "or later).",
        ),
        e.OperationInProgress: AlibabaCode("TaskExists", 400, "Specified task have existed."),
        e.ProtectedAccount: AlibabaCode(
            "OperationDenied", 403, "The operation is denied for this account: {detail}"
        ),
    },
)
