"""Official Alibaba Cloud SDK clients pointed at a keyturn server, one calling convention for
all of them, and raw signed requests for what an SDK will not send on purpose (replays, stale
timestamps).

Three clients speak R-kvstore 2015-01-01: the Tea SDK (``alibabacloud-r-kvstore20150101``) with
its default ACS3-HMAC-SHA256 signature (``tea``) or with ``signature_algorithm='v2'``, the RPC
HMAC-SHA1 signature (``tea-v2``), and the legacy ``aliyun-python-sdk-r-kvstore`` on
``aliyun-python-sdk-core`` (``legacy``). The raw signers use the Tea SDK's own signing helpers,
so they do not share code with the server they test.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

from alibabacloud_r_kvstore20150101 import models as kvstore_models
from alibabacloud_r_kvstore20150101.client import Client as TeaClient
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException
from alibabacloud_tea_openapi.utils import Utils
from aliyunsdkcore.acs_exception.exceptions import ServerException as LegacyServerException
from aliyunsdkcore.client import AcsClient

from tests.support.keyturn_server import KEY_ID, KEY_SECRET

SDKS = ("tea", "tea-v2", "legacy")
VERSION = "2015-01-01"
REGION = "cn-hangzhou"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class KvstoreSdk:
    """One official client; ``call("ResetAccountPassword", InstanceId=...)`` with wire names
    returns the answer's body as a dict, or raises the SDK's own exception."""

    def __init__(
        self, kind: str, endpoint: str, *, key_id: str = KEY_ID, secret: str = KEY_SECRET
    ) -> None:
        self.kind = kind
        self.endpoint = endpoint
        if kind == "legacy":
            self._legacy = AcsClient(key_id, secret, REGION)
        else:
            config = open_api_models.Config(
                access_key_id=key_id,
                access_key_secret=secret,
                region_id=REGION,
                endpoint=endpoint,
                protocol="http",
                signature_algorithm="v2" if kind == "tea-v2" else None,
            )
            self._tea = TeaClient(config)

    def call(self, action: str, **params: Any) -> dict[str, Any]:
        if self.kind == "legacy":
            module = importlib.import_module(
                f"aliyunsdkr_kvstore.request.v20150101.{action}Request"
            )
            request = getattr(module, f"{action}Request")()
            request.set_endpoint(self.endpoint)
            for name, value in params.items():
                getattr(request, f"set_{name}")(value)
            answer: dict[str, Any] = json.loads(self._legacy.do_action_with_exception(request))
            return answer
        model = getattr(kvstore_models, f"{action}Request")(
            **{_snake(name): value for name, value in params.items()}
        )
        response = getattr(self._tea, _snake(action))(model)
        body: dict[str, Any] = response.body.to_map()
        return body


def sdk_error(call: Callable[[], object]) -> tuple[str, int]:
    """Run ``call``; the (Code, HTTP status) of the error the SDK raised. Any other outcome
    (success, an IndexError inside the SDK, ...) fails the test."""
    try:
        call()
    except (ClientException, ServerException) as exc:
        return str(exc.code), int(exc.status_code)
    except LegacyServerException as exc:
        return str(exc.get_error_code()), int(exc.get_http_status())
    raise AssertionError("the call succeeded")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def acs3_request(
    host: str,
    action: str,
    params: Mapping[str, str],
    *,
    key_id: str = KEY_ID,
    secret: str = KEY_SECRET,
    date: str | None = None,
    nonce: str | None = None,
    version: str = VERSION,
) -> tuple[str, dict[str, str]]:
    """(query string, headers) of an ACS3-signed POST with an empty body, signed by the Tea
    SDK's ``Utils.get_authorization``."""
    headers = {
        "host": host,
        "x-acs-action": action,
        "x-acs-version": version,
        "x-acs-date": date or _now(),
        "x-acs-signature-nonce": nonce or uuid.uuid4().hex,
        "x-acs-content-sha256": hashlib.sha256(b"").hexdigest(),
    }
    request = SimpleNamespace(method="POST", pathname="/", query=dict(params), headers=headers)
    authorization = Utils.get_authorization(
        request, "ACS3-HMAC-SHA256", headers["x-acs-content-sha256"], key_id, secret
    )
    return urlencode(dict(params)), {**headers, "authorization": authorization}


def rpc_query(
    action: str,
    params: Mapping[str, str],
    *,
    key_id: str = KEY_ID,
    secret: str = KEY_SECRET,
    timestamp: str | None = None,
    nonce: str | None = None,
    version: str = VERSION,
) -> str:
    """The query string of an RPC v1 (HMAC-SHA1) POST, signed by the Tea SDK's
    ``Utils.get_rpcsignature``."""
    signed = {
        "Action": action,
        "Version": version,
        "Format": "JSON",
        "Timestamp": timestamp or _now(),
        "SignatureNonce": nonce or uuid.uuid4().hex,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "AccessKeyId": key_id,
        **params,
    }
    signature = Utils.get_rpcsignature(signed, "POST", secret)
    return urlencode({**signed, "Signature": signature})
