"""Tencent SSM (Secrets Manager, API 2019-09-23) product secrets, served by ``services.secrets``.

``CreateProductSecret`` puts an account of a Redis, PostgreSQL or TDSQL MySQL instance under
management (the account is ``UserNamePrefix``, ``user@Domains[0]`` on MySQL) and answers a
``FlowID`` at once, as SSM does; the tag ``keyturn:overlap`` (e.g. ``10m``) asks for overlap
mode. ``GetSecretValue`` reads the current value (``SSM_Current``; ``SSM_Previous`` the one
before) as SSM's ``{"UserName", "Password"}``; ``RotateProductSecret`` starts a rotation that
``DescribeAsyncRequestInfo`` follows; ``UpdateRotationStatus`` sets the schedule (``Frequency``
days from ``RotationBeginTime``, UTC) that ``DescribeRotationDetail`` reports. Every action
names its secret with ``SecretName``: policies grant ``ssm:GetSecretValue`` on
``qcs::ssm:REGION:uin/UIN:secret/NAME``, another tenant's secret (or a KMS one) is not found,
and listings and flow reads answer only what the key may read. ``DeleteSecret`` forgets the
secret at once (``RecoveryWindowInDays`` is not kept). Secret values never reach a log: they
leave the service as ``Secret`` and are revealed only into the answer.
"""

from __future__ import annotations

import re
from typing import Any

from keyturn.core import errors as e
from keyturn.core.model import Instance, Product
from keyturn.core.secret_manager import (
    FlowState,
    RotationFlow,
    SecretRecord,
    SecretSpec,
    SecretVendor,
    VersionStage,
)
from keyturn.core.store_ports import Page
from keyturn.dialects.secret_calls import Instances, located, manager, own, readable, rotate
from keyturn.dialects.tencent import ssm_params as p
from keyturn.dialects.tencent.params import Params
from keyturn.dialects.tencent.product import TencentProduct
from keyturn.service.context import Answer, Caller
from keyturn.service.facade import Services

VENDOR = SecretVendor.TENCENT_SSM
#: The most secrets a listing reads (it filters by vendor, name and policy in memory).
MAX_SCAN = 10_000
#: The most versions DescribeRotationHistory answers.
MAX_HISTORY = 1000
_HEX = re.compile(r"[0-9a-f]{13}")
_DECIMAL = re.compile(r"[0-9]{1,40}")
#: SSM's SecretType of a cloud product (database) secret.
PRODUCT_SECRET_TYPE = 1
_FLOW_STATUS = {
    FlowState.PENDING: p.FLOW_RUNNING,
    FlowState.RUNNING: p.FLOW_RUNNING,
    FlowState.SUCCEEDED: p.FLOW_SUCCEEDED,
    FlowState.FAILED: p.FLOW_FAILED,
}


async def create_product_secret(services: Services, caller: Caller, params: Params) -> Answer:
    name = p.secret_name(params)
    product = p.product_of(params)
    prefix = p.user_name_prefix(params)
    instance_id = params.required_string("InstanceID")
    account = f"{prefix}@{p.domains(params)[0]}" if product is Product.TENCENT_TDMYSQL else prefix
    enabled = params.boolean("EnableRotation", False)
    period = p.frequency(params, "RotationFrequency", 1 if enabled else None)
    begin = p.begin_time(params)
    if enabled and begin is None:
        raise e.MissingParameter(
            "The parameter `RotationBeginTime` is required when `EnableRotation` is true."
        )
    await services.queries.instance(caller, product, instance_id)
    spec = SecretSpec(
        tenant_id=caller.tenant_id,
        name=name,
        vendor=VENDOR,
        instance_id=instance_id,
        account=account,
        rotation=period if enabled else None,
        begin=begin.time() if begin is not None else None,
        description=p.description(params),
        overlap=p.overlap(params),
        source="api",
    )
    # SSM creates asynchronously: the answer's FlowID is followed with DescribeAsyncRequestInfo.
    created = await manager(services).create_secret(spec, wait=False)
    return Answer(
        {"SecretName": name, "TagCode": 0, "TagMsg": "", "FlowID": flow_number(created.flow_id)}
    )


async def get_secret_value(services: Services, caller: Caller, params: Params) -> Answer:
    name = p.secret_name(params)
    previous, version_id = p.version_stage(params)
    record = await _own(services, caller, name)
    stage = VersionStage.PREVIOUS if previous else VersionStage.CURRENT
    version = await manager(services).get_secret_value(
        caller.tenant_id,
        name,
        version_id=version_id,
        version_stage=None if version_id else stage.value,
    )
    answered = p.CURRENT_VERSION if VersionStage.CURRENT in version.stages else version.version_id
    if previous:
        answered = p.PREVIOUS_VERSION
    return Answer(
        {
            "SecretName": name,
            "VersionId": answered,
            "SecretBinary": "",
            "SecretString": p.secret_string(
                await _user_name(services, caller, record, version.account),
                version.password.reveal(),
            ),
        }
    )


async def rotate_product_secret(services: Services, caller: Caller, params: Params) -> Answer:
    name = p.secret_name(params)
    await _own(services, caller, name)
    flow = await rotate(services, caller, name)
    return Answer({"FlowID": flow_number(flow.flow_id)}, task_id=flow.task_id)


async def describe_async_request_info(services: Services, caller: Caller, params: Params) -> Answer:
    flow_id = flow_of(params)
    flow = await manager(services).describe_flow(caller.tenant_id, flow_id)
    try:
        record = await _own(services, caller, flow.name)
    except e.SecretNotFound:
        raise e.RotationFlowNotFound("The async request does not exist.") from None
    if not readable(caller, record, await _instance_of(services, caller, record)):
        # A flow of a secret the key may not read is not found, like another tenant's.
        raise e.RotationFlowNotFound("The async request does not exist.")
    return Answer({"TaskStatus": _FLOW_STATUS[flow.state], "Description": _flow_text(flow)})


async def update_rotation_status(services: Services, caller: Caller, params: Params) -> Answer:
    name = p.secret_name(params)
    if "EnableRotation" not in params:
        raise e.MissingParameter("The parameter `EnableRotation` is missing.")
    enabled = params.boolean("EnableRotation", False)
    record = await _own(services, caller, name)
    period = p.frequency(params, "Frequency", None) or record.spec.rotation
    begin = p.begin_time(params)
    if enabled and period is None:
        raise e.MissingParameter("The parameter `Frequency` is required to enable rotation.")
    await manager(services).update_rotation(
        caller.tenant_id, name, enabled=enabled, period=period, begin=begin
    )
    return Answer({})


async def describe_rotation_detail(services: Services, caller: Caller, params: Params) -> Answer:
    name = p.secret_name(params)
    await _own(services, caller, name)
    status = await manager(services).describe_rotation(caller.tenant_id, name)
    return Answer(
        {
            "EnableRotation": status.enabled,
            "Frequency": p.days(status.period),
            "LatestRotateTime": p.text_time(status.last_rotation_at),
            "NextRotateBeginTime": p.text_time(status.next_rotation_at),
        }
    )


async def describe_rotation_history(services: Services, caller: Caller, params: Params) -> Answer:
    name = p.secret_name(params)
    await _own(services, caller, name)
    # Every version a rotation made, newest first (the staged ones are only the last two).
    flows = await manager(services).rotation_history(caller.tenant_id, name, limit=MAX_HISTORY)
    ids = [flow.version_id for flow in flows if flow.state is FlowState.SUCCEEDED]
    return Answer({"VersionIDs": ids, "TotalCount": len(ids)})


async def describe_secret(services: Services, caller: Caller, params: Params) -> Answer:
    name = p.secret_name(params)
    record = await _own(services, caller, name)
    instance = await _instance_of(services, caller, record)
    return Answer(_metadata(record, instance, detailed=True))


async def list_secrets(services: Services, caller: Caller, params: Params) -> Answer:
    offset = params.integer("Offset", 0, maximum=2**31 - 1)
    limit = params.integer("Limit", 20, minimum=1, maximum=p.MAX_LIMIT)
    search = params.string("SearchSecretName") or ""
    if len(search) > 128:
        raise e.InvalidParameterValue("The parameter `SearchSecretName` is at most 128 characters.")
    secret_type = params.integer("SecretType", PRODUCT_SECRET_TYPE, maximum=10)
    wanted_product = p.product_of(params) if "ProductName" in params else None
    records, _ = await manager(services).list_secrets(
        caller.tenant_id, page=Page(limit=MAX_SCAN, offset=0)
    )
    instances = Instances(services, caller, p.NAME_OF_PRODUCT)
    shown = []
    for record in records:
        if record.spec.vendor is not VENDOR or search not in record.name:
            continue
        if secret_type != PRODUCT_SECRET_TYPE:
            continue
        instance = await instances.of(record)
        if not readable(caller, record, instance):
            continue
        if wanted_product is None or (instance is not None and instance.product is wanted_product):
            shown.append((record, instance))
    window = shown[offset : offset + limit]
    return Answer(
        {
            "TotalCount": len(shown),
            "SecretMetadatas": [_metadata(r, i, detailed=False) for r, i in window],
        }
    )


async def delete_secret(services: Services, caller: Caller, params: Params) -> Answer:
    name = p.secret_name(params)
    params.integer("RecoveryWindowInDays", 0, maximum=30)
    await _own(services, caller, name)
    await manager(services).delete_secret(caller.tenant_id, name)
    return Answer({"SecretName": name, "DeleteTime": 0, "FlowID": 0})


async def get_service_status(services: Services, caller: Caller, params: Params) -> Answer:
    return Answer(
        {
            "ServiceEnabled": True,
            "InvalidType": 0,
            "AccessKeyEscrowEnabled": False,
            "ExpireTime": "",
            "QPSLimit": 300,
            "SecretLimit": 0,
            "PayModel": "",
            "RenewFlag": 0,
            "ResourceId": "",
            "TotalCount": 0,
            "ResourceRegion": "",
        }
    )


async def describe_supported_products(services: Services, caller: Caller, params: Params) -> Answer:
    return Answer({"Products": list(p.PRODUCT_NAMES), "TotalCount": len(p.PRODUCT_NAMES)})


def flow_number(flow_id: str) -> int | str:
    """SSM's ``FlowID`` is an Integer: keyturn's flow ids (``flow-`` and 13 hex digits, below
    2**52, so int64 SDKs hold them) go out as the number their hex digits spell, and come
    back with ``flow_of``."""
    prefix, _, digits = flow_id.partition("-")
    if prefix == "flow" and _HEX.fullmatch(digits):
        return int(digits, 16)
    return flow_id


def flow_of(params: Params) -> str:
    """The flow id a ``FlowID`` names (a number from ``flow_number``, or a flow id string)."""
    raw = params.raw("FlowID")
    if raw is None:
        raise e.MissingParameter("The parameter `FlowID` is missing.")
    if isinstance(raw, str) and _DECIMAL.fullmatch(raw):
        raw = int(raw)
    if isinstance(raw, str):
        if not raw or len(raw) > 64:
            raise e.InvalidParameterValue("The parameter `FlowID` is not a flow id.")
        return raw
    if not isinstance(raw, int) or isinstance(raw, bool) or not 0 <= raw < 2**52:
        raise e.InvalidParameter("The parameter `FlowID` must be an Integer.")
    return f"flow-{raw:013x}"


async def _own(services: Services, caller: Caller, name: str) -> SecretRecord:
    return await own(services, caller, name, VENDOR)


async def _instance_of(services: Services, caller: Caller, record: SecretRecord) -> Instance | None:
    return await located(services, caller, record, p.NAME_OF_PRODUCT)


async def _user_name(services: Services, caller: Caller, record: SecretRecord, account: str) -> str:
    """The login name of ``account``: a MySQL account's user part (``app`` of ``app@%``)."""
    if "@" not in account:
        return account
    instance = await _instance_of(services, caller, record)
    if instance is not None and instance.product is Product.TENCENT_TDMYSQL:
        return account.rsplit("@", 1)[0]
    return account


def _metadata(record: SecretRecord, instance: Instance | None, *, detailed: bool) -> dict[str, Any]:
    spec = record.spec
    product = instance.product if instance is not None else None
    fields: dict[str, Any] = {
        "SecretName": spec.name,
        "Description": spec.description,
        "KmsKeyId": "",
        "CreateUin": int(spec.tenant_id) if spec.tenant_id.isdigit() else 0,
        "Status": "Enabled",
        "DeleteTime": 0,
        "CreateTime": p.unix(record.created_at),
        "SecretType": PRODUCT_SECRET_TYPE,
        "ProductName": p.NAME_OF_PRODUCT.get(product, "") if product is not None else "",
        "ResourceID": spec.instance_id,
        "RotationStatus": record.rotation_enabled,
        "RotationFrequency": p.days(spec.rotation),
        "ResourceName": spec.account,
        "ProjectID": 0,
        "AssociatedInstanceIDs": [spec.instance_id],
        "NextRotationTime": p.unix(record.next_rotation_at),
    }
    if not detailed:
        fields["KmsKeyType"] = "DEFAULT"
        fields["RotationBeginTime"] = spec.begin.strftime("%H:%M:%S") if spec.begin else ""
    return fields


def _flow_text(flow: RotationFlow) -> str:
    if flow.state is FlowState.FAILED:
        return flow.message or "The rotation failed."
    if flow.state is FlowState.SUCCEEDED:
        return "The rotation succeeded."
    return "The rotation is in progress."


PRODUCT = TencentProduct(
    service="ssm",
    version="2019-09-23",
    instance_param="SecretName",
    resource_kind="secret",
    changes={
        "CreateProductSecret": "create_secret",
        "RotateProductSecret": "rotate_secret",
        "UpdateRotationStatus": "update_rotation",
        "DeleteSecret": "delete_secret",
    },
    actions={
        "CreateProductSecret": create_product_secret,
        "GetSecretValue": get_secret_value,
        "RotateProductSecret": rotate_product_secret,
        "DescribeAsyncRequestInfo": describe_async_request_info,
        "UpdateRotationStatus": update_rotation_status,
        "DescribeRotationDetail": describe_rotation_detail,
        "DescribeRotationHistory": describe_rotation_history,
        "DescribeSecret": describe_secret,
        "ListSecrets": list_secrets,
        "DeleteSecret": delete_secret,
        "GetServiceStatus": get_service_status,
        "DescribeSupportedProducts": describe_supported_products,
    },
    codes={
        e.SecretNotFound: "ResourceNotFound.SecretNotExist",
        e.SecretVersionNotFound: "ResourceNotFound",
        e.RotationFlowNotFound: "ResourceNotFound",
        e.InstanceNotFound: "ResourceNotFound",
        e.AccountNotFound: "ResourceNotFound",
        e.SecretExists: "ResourceInUse.SecretExists",
        e.OperationInProgress: "FailedOperation.RotationForbidden",
        e.Conflict: "OperationDenied",
        e.ProtectedAccount: "OperationDenied",
        e.EngineError: "FailedOperation",
    },
)
