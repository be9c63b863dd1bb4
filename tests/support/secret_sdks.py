"""The official secret-manager SDKs pointed at a keyturn server: Tencent SSM
(``tencentcloud-sdk-python-ssm``) and Alibaba KMS (``alibabacloud-kms20160120``), each with a
few calls the wire tests share (create, read the credential, rotate and wait)."""

from __future__ import annotations

import json
import time
from typing import Any

from alibabacloud_kms20160120 import models as kms_models
from alibabacloud_kms20160120.client import Client as KmsClient
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.exceptions import ClientException
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.ssm.v20190923 import models as ssm_models
from tencentcloud.ssm.v20190923 import ssm_client

from tests.support.keyturn_server import KEY_ID, KEY_SECRET

REGION = "ap-guangzhou"
KMS_REGION = "cn-hangzhou"


def ssm_sdk(
    endpoint: str,
    *,
    key_id: str = KEY_ID,
    secret: str = KEY_SECRET,
    sign_method: str | None = None,
    method: str = "POST",
) -> ssm_client.SsmClient:
    """The SSM client; ``sign_method`` ``HmacSHA256``/``HmacSHA1`` signs the legacy way."""
    http = HttpProfile(protocol="http", endpoint=endpoint, reqMethod=method)
    settings = ClientProfile(httpProfile=http, signMethod=sign_method)
    return ssm_client.SsmClient(credential.Credential(key_id, secret), REGION, settings)


def kms_sdk(
    endpoint: str, *, key_id: str = KEY_ID, secret: str = KEY_SECRET, rpc: bool = False
) -> KmsClient:
    """The KMS client: ACS3-HMAC-SHA256, or with ``rpc`` the RPC HMAC-SHA1 signature."""
    config = open_api_models.Config(
        access_key_id=key_id,
        access_key_secret=secret,
        region_id=KMS_REGION,
        endpoint=endpoint,
        protocol="http",
        signature_algorithm="v2" if rpc else None,
    )
    return KmsClient(config)


def ssm_call(client: ssm_client.SsmClient, action: str, **fields: Any) -> Any:
    """``client.<action>`` with a request model holding ``fields`` (wire names)."""
    request = getattr(ssm_models, f"{action}Request")()
    for name, value in fields.items():
        setattr(request, name, value)
    return getattr(client, action)(request)


def ssm_create(
    client: ssm_client.SsmClient,
    name: str,
    *,
    product: str,
    instance_id: str,
    prefix: str,
    domains: list[str] | None = None,
    **fields: Any,
) -> int:
    """CreateProductSecret, waited for: the FlowID, once DescribeAsyncRequestInfo says done."""
    answer = ssm_call(
        client,
        "CreateProductSecret",
        SecretName=name,
        UserNamePrefix=prefix,
        ProductName=product,
        InstanceID=instance_id,
        Domains=domains or ["%"],
        PrivilegesList=[],
        **fields,
    )
    assert answer.SecretName == name
    flow: int = answer.FlowID
    ssm_wait(client, flow)
    return flow


def ssm_wait(client: ssm_client.SsmClient, flow_id: int, timeout: float = 30.0) -> None:
    """Poll DescribeAsyncRequestInfo until the flow ended; fail unless it succeeded."""
    deadline = time.monotonic() + timeout
    while True:
        info = ssm_call(client, "DescribeAsyncRequestInfo", FlowID=flow_id)
        if info.TaskStatus == 1:
            return
        assert info.TaskStatus == 0, f"flow failed: {info.Description}"
        assert time.monotonic() < deadline, f"flow {flow_id} still running after {timeout}s"
        time.sleep(0.05)


def ssm_credential(
    client: ssm_client.SsmClient, name: str, version: str | None = None
) -> tuple[str, str]:
    """(UserName, Password) of the product secret's current (or named) version."""
    fields = {"SecretName": name}
    if version is not None:
        fields["VersionId"] = version
    answer = ssm_call(client, "GetSecretValue", **fields)
    value = json.loads(answer.SecretString)
    return str(value["UserName"]), str(value["Password"])


#: When each secret was last rotated through ``ssm_rotate`` (whole seconds).
_ROTATED: dict[str, int] = {}
#: How often a rotation was refused because another change of the account still ran (the
#: previous overlap's follow-up) and was sent again.
REFUSED_ROTATIONS: list[str] = []
BUSY_TRIES = 50


def ssm_rotate(client: ssm_client.SsmClient, name: str) -> int:
    """RotateProductSecret, followed to its end. TC3 signs whole seconds and keyturn refuses
    the very same change signed twice in one second as a replay, so a second rotation of one
    secret waits for the next second (an application rotating that often would too). A
    rotation refused while another change of the account runs is sent again."""
    for _ in range(BUSY_TRIES):
        if _ROTATED.get(name) == int(time.time()):
            time.sleep(1 - time.time() % 1 + 0.01)
        _ROTATED[name] = int(time.time())
        try:
            flow: int = ssm_call(client, "RotateProductSecret", SecretName=name).FlowID
        except TencentCloudSDKException as exc:
            if exc.get_code() != "FailedOperation.RotationForbidden":
                raise
            REFUSED_ROTATIONS.append(name)
            continue
        ssm_wait(client, flow)
        return flow
    raise AssertionError(f"{name}: every rotation was refused")


def kms_create(
    client: KmsClient,
    name: str,
    *,
    secret_type: str,
    instance_id: str,
    account: str,
    sub_type: str = "SingleUser",
    custom: dict[str, Any] | None = None,
    **fields: Any,
) -> Any:
    """CreateSecret of a database secret; ``custom`` is its ExtendedConfig's CustomData
    (keyturn reads ``Overlap`` there)."""
    key = "DBInstanceId" if secret_type == "Rds" else "InstanceId"
    request = kms_models.CreateSecretRequest(
        secret_name=name,
        version_id="v1",
        secret_type=secret_type,
        secret_data=json.dumps({"AccountName": account, "AccountPassword": ""}),
        extended_config={key: instance_id, "SecretSubType": sub_type, "CustomData": custom or {}},
        **fields,
    )
    return client.create_secret(request).body


def kms_value(
    client: KmsClient, name: str, *, stage: str | None = None, version_id: str | None = None
) -> tuple[str, str, Any]:
    """(AccountName, AccountPassword, the whole answer) of a version of the secret."""
    request = kms_models.GetSecretValueRequest(
        secret_name=name, version_stage=stage, version_id=version_id
    )
    body = client.get_secret_value(request).body
    value = json.loads(body.secret_data)
    return str(value["AccountName"]), str(value["AccountPassword"]), body


def kms_rotate(client: KmsClient, name: str, timeout: float = 30.0) -> str:
    """RotateSecret, then poll GetSecretValue until the new version is ACSCurrent; a rotation
    refused while another change of the account runs is sent again."""
    request = kms_models.RotateSecretRequest(secret_name=name, version_id="next")
    for _ in range(BUSY_TRIES):
        try:
            body = client.rotate_secret(request).body
            break
        except ClientException as exc:
            if exc.code != "Rejected.ResourceInUse":
                raise
            REFUSED_ROTATIONS.append(name)
            time.sleep(0.2)
    else:
        raise AssertionError(f"{name}: every rotation was refused")
    version: str = body.version_id
    deadline = time.monotonic() + timeout
    while kms_value(client, name)[2].version_id != version:
        assert time.monotonic() < deadline, f"version {version} not current after {timeout}s"
        time.sleep(0.05)
    return version
