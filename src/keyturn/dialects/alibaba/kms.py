"""Alibaba KMS (API 2016-01-20) database secrets, served by ``services.secrets``.

``CreateSecret`` with ``SecretType`` ``Redis`` puts an account of an ``alibaba-kvstore``
instance under management; ``Rds`` one of a SQL instance (keyturn's PostgreSQL and MySQL/MariaDB
instances). It answers once the first password logged in (KMS creates synchronously).
``GetSecretValue`` reads a version by ``VersionStage`` (``ACSCurrent``, or ``ACSPrevious``: the
one before the last rotation) or ``VersionId``; ``RotateSecret`` starts a rotation and answers
the version it makes, which becomes ``ACSCurrent`` once verified; ``EnableAutomaticRotation``
with ``RotationInterval`` (in ``CreateSecret`` and ``UpdateSecretRotationPolicy``) schedules
rotations. Every action names its secret with ``SecretName``: policies grant
``kms:GetSecretValue`` on ``acs:kms:REGION:ACCOUNT:secret/NAME``; another tenant's secret (or
an SSM one) is ``Forbidden.ResourceNotFound``, and listings answer only what the key may read.
``ExtendedConfig.CustomData.Overlap`` (e.g. ``10m``) asks for overlap mode. keyturn sets the
passwords and names the versions itself: the ``AccountPassword`` of ``SecretData`` and a
``VersionId`` sent to CreateSecret or RotateSecret are checked for form only.
"""

from __future__ import annotations

from typing import Any

from keyturn.core import errors as e
from keyturn.core.model import Instance, Product
from keyturn.core.secret_manager import SecretRecord, SecretSpec, SecretVendor, SecretVersion
from keyturn.core.store_ports import Page
from keyturn.dialects.alibaba import kms_params as k
from keyturn.dialects.alibaba.errors import AlibabaCode
from keyturn.dialects.alibaba.params import Params
from keyturn.dialects.alibaba.product import AlibabaProduct
from keyturn.dialects.secret_calls import (
    Instances,
    instance_of,
    located,
    manager,
    own,
    readable,
    rotate,
)
from keyturn.service.context import Answer, Caller
from keyturn.service.facade import Services

VENDOR = SecretVendor.ALIBABA_KMS
#: Which keyturn products a secret type may name.
PRODUCTS = {
    "Redis": (Product.ALIBABA_KVSTORE,),
    "Rds": (Product.TENCENT_POSTGRES, Product.TENCENT_TDMYSQL),
}
ALL_PRODUCTS = tuple(product for products in PRODUCTS.values() for product in products)
#: The most secrets a listing reads (it filters by vendor and policy in memory).
MAX_SCAN = 10_000


async def create_secret(services: Services, caller: Caller, params: Params) -> Answer:
    name = k.secret_name(params, caller.tenant_id)
    k.version_id(params, required=True)
    database = k.database_secret(params)
    enabled = k.flag(params, "EnableAutomaticRotation", False)
    period = k.interval(params)
    if enabled and period is None:
        raise e.MissingParameter(
            'The parameter "RotationInterval" is required when automatic rotation is enabled.'
        )
    instance = await instance_of(
        services, caller, database.instance_id, PRODUCTS[database.secret_type]
    )
    spec = SecretSpec(
        tenant_id=caller.tenant_id,
        name=name,
        vendor=VENDOR,
        instance_id=database.instance_id,
        account=database.account,
        rotation=period if enabled else None,
        description=k.description(params),
        sub_type=database.sub_type,
        overlap=database.overlap,
        source="api",
    )
    created = await manager(services).create_secret(spec)
    record = created.secret
    return Answer(
        {
            "Arn": k.arn(instance.region, caller.tenant_id, name),
            "VersionId": record.current_version or "",
            "SecretName": name,
            "SecretType": database.secret_type,
            "AutomaticRotation": _rotation_word(record),
            "RotationInterval": k.interval_text(record.spec.rotation),
            "NextRotationDate": k.iso(record.next_rotation_at),
            "ExtendedConfig": k.extended_config(
                database.secret_type, database.instance_id, database.sub_type, database.overlap
            ),
            "DKMSInstanceId": "",
        }
    )


async def get_secret_value(services: Services, caller: Caller, params: Params) -> Answer:
    name = k.secret_name(params, caller.tenant_id)
    version_id = k.version_id(params)
    stage = params.string("VersionStage") or None
    record = await _own(services, caller, name)
    version = await manager(services).get_secret_value(
        caller.tenant_id, name, version_id=version_id, version_stage=stage
    )
    secret_type, _ = await _typed(services, caller, record)
    answer: dict[str, Any] = {
        "SecretName": name,
        "SecretType": secret_type,
        "SecretData": k.secret_data(version.account, version.password.reveal()),
        "SecretDataType": "text",
        "VersionId": version.version_id,
        "VersionStages": {"VersionStage": [stage.value for stage in version.stages]},
        "CreateTime": k.iso(version.created_at),
        "AutomaticRotation": _rotation_word(record),
        "RotationInterval": k.interval_text(record.spec.rotation),
        "NextRotationDate": k.iso(record.next_rotation_at),
        "LastRotationDate": k.iso(record.last_rotation_at),
    }
    if k.flag(params, "FetchExtendedConfig", False):
        answer["ExtendedConfig"] = k.extended_config(
            secret_type, record.spec.instance_id, record.spec.sub_type, record.spec.overlap
        )
    return Answer(answer)


async def rotate_secret(services: Services, caller: Caller, params: Params) -> Answer:
    name = k.secret_name(params, caller.tenant_id)
    k.version_id(params, required=True)
    await _own(services, caller, name)
    flow = await rotate(services, caller, name)
    region = await _region(services, caller, flow.name)
    return Answer(
        {
            "Arn": k.arn(region, caller.tenant_id, name),
            "SecretName": name,
            "VersionId": flow.version_id,
        },
        task_id=flow.task_id,
    )


async def update_secret_rotation_policy(
    services: Services, caller: Caller, params: Params
) -> Answer:
    name = k.secret_name(params, caller.tenant_id)
    if "EnableAutomaticRotation" not in params:
        raise e.MissingParameter(
            'The input parameter "EnableAutomaticRotation" that is mandatory for processing '
            "this request is not supplied."
        )
    enabled = k.flag(params, "EnableAutomaticRotation", False)
    period = k.interval(params)
    await _own(services, caller, name)
    await manager(services).update_rotation(caller.tenant_id, name, enabled=enabled, period=period)
    return Answer({})


async def describe_secret(services: Services, caller: Caller, params: Params) -> Answer:
    name = k.secret_name(params, caller.tenant_id)
    record = await _own(services, caller, name)
    secret_type, instance = await _typed(services, caller, record)
    region = instance.region if instance is not None else "*"
    spec = record.spec
    return Answer(
        {
            "Arn": k.arn(region, caller.tenant_id, name),
            "SecretName": name,
            "SecretType": secret_type,
            "Description": spec.description,
            "EncryptionKeyId": "",
            "DKMSInstanceId": "",
            "CreateTime": k.iso(record.created_at),
            "UpdateTime": k.iso(record.last_rotation_at or record.created_at),
            "PlannedDeleteTime": "",
            "AutomaticRotation": _rotation_word(record),
            "RotationInterval": k.interval_text(spec.rotation),
            "LastRotationDate": k.iso(record.last_rotation_at),
            "NextRotationDate": k.iso(record.next_rotation_at),
            "ExtendedConfig": k.extended_config(
                secret_type, spec.instance_id, spec.sub_type, spec.overlap
            ),
        }
    )


async def list_secrets(services: Services, caller: Caller, params: Params) -> Answer:
    number, size = k.page(params)
    records, _ = await manager(services).list_secrets(
        caller.tenant_id, page=Page(limit=MAX_SCAN, offset=0)
    )
    instances = Instances(services, caller, ALL_PRODUCTS)
    shown = []
    for record in records:
        if record.spec.vendor is not VENDOR:
            continue
        instance = await instances.of(record)
        secret_type = _type_of(instance)
        if readable(caller, record, instance):
            shown.append((record, secret_type))
    window = shown[(number - 1) * size : number * size]
    return Answer(
        {
            "PageNumber": number,
            "PageSize": size,
            "TotalCount": len(shown),
            "SecretList": {
                "Secret": [
                    {
                        "SecretName": record.name,
                        "SecretType": secret_type,
                        "CreateTime": k.iso(record.created_at),
                        "UpdateTime": k.iso(record.last_rotation_at or record.created_at),
                        "PlannedDeleteTime": "",
                    }
                    for record, secret_type in window
                ]
            },
        }
    )


async def list_secret_version_ids(services: Services, caller: Caller, params: Params) -> Answer:
    name = k.secret_name(params, caller.tenant_id)
    number, size = k.page(params)
    k.flag(params, "IncludeDeprecated", False)
    await _own(services, caller, name)
    versions = await manager(services).list_versions(caller.tenant_id, name)
    window = versions[(number - 1) * size : number * size]
    return Answer(
        {
            "SecretName": name,
            "PageNumber": number,
            "PageSize": size,
            "TotalCount": len(versions),
            "VersionIds": {"VersionId": [_version(v) for v in window]},
        }
    )


async def delete_secret(services: Services, caller: Caller, params: Params) -> Answer:
    name = k.secret_name(params, caller.tenant_id)
    await _own(services, caller, name)
    await manager(services).delete_secret(caller.tenant_id, name)
    return Answer({"SecretName": name, "PlannedDeleteTime": ""})


def _version(version: SecretVersion) -> dict[str, Any]:
    return {
        "VersionId": version.version_id,
        "CreateTime": k.iso(version.created_at),
        "VersionStages": {"VersionStage": [stage.value for stage in version.stages]},
    }


def _rotation_word(record: SecretRecord) -> str:
    return "Enabled" if record.rotation_enabled else "Disabled"


async def _own(services: Services, caller: Caller, name: str) -> SecretRecord:
    return await own(services, caller, name, VENDOR)


async def _typed(
    services: Services, caller: Caller, record: SecretRecord
) -> tuple[str, Instance | None]:
    """The secret's type (``Redis`` on a kvstore instance, else ``Rds``) and its instance,
    when the tenant still has it."""
    instance = await located(services, caller, record, ALL_PRODUCTS)
    return _type_of(instance), instance


def _type_of(instance: Instance | None) -> str:
    """``Redis`` for a secret on a kvstore instance, else ``Rds``."""
    if instance is not None and instance.product is Product.ALIBABA_KVSTORE:
        return "Redis"
    return "Rds"


async def _region(services: Services, caller: Caller, name: str) -> str:
    _, instance = await _typed(services, caller, await _own(services, caller, name))
    return instance.region if instance is not None else "*"


_NOT_FOUND = AlibabaCode("Forbidden.ResourceNotFound", 404, "The specified resource is not found.")

PRODUCT = AlibabaProduct(
    code="Kms",
    version="2016-01-20",
    service="kms",
    instance_param="SecretName",
    resource_kind="secret",
    resource_of=k.resource_of,
    changes={
        "CreateSecret": "create_secret",
        "RotateSecret": "rotate_secret",
        "UpdateSecretRotationPolicy": "update_rotation",
        "DeleteSecret": "delete_secret",
    },
    actions={
        "CreateSecret": create_secret,
        "GetSecretValue": get_secret_value,
        "RotateSecret": rotate_secret,
        "UpdateSecretRotationPolicy": update_secret_rotation_policy,
        "DescribeSecret": describe_secret,
        "ListSecrets": list_secrets,
        "ListSecretVersionIds": list_secret_version_ids,
        "DeleteSecret": delete_secret,
    },
    codes={
        e.SecretNotFound: _NOT_FOUND,
        e.SecretVersionNotFound: _NOT_FOUND,
        e.RotationFlowNotFound: _NOT_FOUND,
        e.InstanceNotFound: _NOT_FOUND,
        e.AccountNotFound: _NOT_FOUND,
        e.AccessDenied: AlibabaCode(
            "Forbidden.NoPermission", 403, "This operation is forbidden by permission system."
        ),
        e.SecretExists: AlibabaCode("Rejected.ResourceExist", 400, "The resource already exists."),
        e.OperationInProgress: AlibabaCode(
            "Rejected.ResourceInUse", 400, "A rotation of this secret is already in progress."
        ),
        e.InvalidParameterValue: AlibabaCode("InvalidParameter", 400),
        e.RequestThrottled: AlibabaCode("Rejected.Throttling", 429, "QPS Limit Exceeded"),
        e.EngineError: AlibabaCode("Rejected.UnexpectedStatus", 400),
        # The first version is still being set and will be: retry-later semantics.
        e.OperationTimedOut: AlibabaCode("ServiceUnavailable", 503),
    },
)
