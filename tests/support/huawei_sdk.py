"""The official Huawei Cloud DCS SDK (huaweicloudsdkdcs) pointed at a keyturn server.

``huaweicloudsdkcore`` writes ``$HOME/.huaweicloud/application_id`` when it is imported (the id
goes into its User-Agent), so the import runs with ``HOME`` pointing at a throwaway directory
and ``HOME`` is restored right after: the tests never touch the real home directory.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from typing import Any

_HOME = tempfile.mkdtemp(prefix="keyturn-hw-home-")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
_saved_home = os.environ.get("HOME")
os.environ["HOME"] = _HOME
try:
    import huaweicloudsdkcore.http.user_agent  # noqa: F401  (computes the User-Agent now)
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.exceptions.exceptions import (
        ClientRequestException,
        ServerResponseException,
    )
    from huaweicloudsdkcore.sdk_request import SdkRequest
    from huaweicloudsdkcore.signer.signer import Signer
    from huaweicloudsdkdcs.v2 import (
        DcsClient,
        ListInstancesRequest,
        ModifyInstancePasswordBody,
        ResetInstancePasswordBody,
        ResetPasswordRequest,
        ShowInstanceRequest,
        ShowJobInfoRequest,
        UpdatePasswordRequest,
    )
finally:
    if _saved_home is None:
        os.environ.pop("HOME", None)
    else:
        os.environ["HOME"] = _saved_home

from tests.support.keyturn_server import HW_AK, HW_PROJECT, HW_SK  # noqa: E402

__all__ = [
    "ClientRequestException",
    "ListInstancesRequest",
    "ServerResponseException",
    "ShowInstanceRequest",
    "ShowJobInfoRequest",
    "dcs_client",
    "reset_password",
    "sdk_signed",
    "update_password",
]


def dcs_client(
    endpoint: str, *, ak: str = HW_AK, sk: str = HW_SK, project: str = HW_PROJECT
) -> Any:
    """A ``DcsClient`` for ``http://endpoint`` signing with ``ak``/``sk`` for ``project``."""
    credentials = BasicCredentials(ak, sk, project)
    return (
        DcsClient.new_builder()
        .with_credentials(credentials)
        .with_endpoints([f"http://{endpoint}"])
        .build()
    )


def reset_password(
    client: Any,
    instance_id: str,
    *,
    new_password: str | None = None,
    no_password_access: bool | None = None,
) -> Any:
    body = ResetInstancePasswordBody(
        new_password=new_password, no_password_access=no_password_access
    )
    return client.reset_password(ResetPasswordRequest(instance_id=instance_id, body=body))


def update_password(client: Any, instance_id: str, *, old: str, new: str) -> Any:
    body = ModifyInstancePasswordBody(old_password=old, new_password=new)
    return client.update_password(UpdatePasswordRequest(instance_id=instance_id, body=body))


def sdk_signed(
    endpoint: str,
    method: str,
    path: str,
    *,
    query: list[tuple[str, object]] | None = None,
    body: bytes = b"",
    sdk_date: str | None = None,
    ak: str = HW_AK,
    sk: str = HW_SK,
    project: str = HW_PROJECT,
    headers: dict[str, str] | None = None,
) -> tuple[str, dict[str, str]]:
    """Sign a hand-made request with the SDK's own ``Signer`` (``sdk_date`` overrides the time,
    as a caller-set ``X-Sdk-Date`` does in the SDK); returns the URL and the headers to send."""
    header_params = {
        "Content-Type": "application/json;charset=utf-8",
        "X-Project-Id": project,
        **(headers or {}),
    }
    if sdk_date is not None:
        header_params["X-Sdk-Date"] = sdk_date
    request = SdkRequest(
        method=method,
        schema="http",
        host=endpoint,
        resource_path=path,
        query_params=list(query or []),
        header_params=header_params,
        body=body,
    )
    signed = Signer(BasicCredentials(ak, sk, project)).sign(request)
    return f"http://{endpoint}{signed.uri}", dict(signed.header_params)
