"""Every dialect audits a request it refuses before the gate through ``Gate.rejected``: an
unauthenticated one with no tenant and the key it claimed, an authenticated one (unknown
action or version, another project) with the caller's tenant, each with the vendor code it
answered. Calls refused inside the gate are the gate's to audit, never recorded twice."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from keyturn.core import errors as e
from keyturn.core.metrics import NO_METRICS
from keyturn.core.model import AccessKey
from keyturn.core.secrets import Secret
from keyturn.dialects._wire import WireRequest
from keyturn.dialects.alibaba import AlibabaDialect
from keyturn.dialects.alibaba.kvstore import PRODUCT as KVSTORE
from keyturn.dialects.huawei import HuaweiDialect
from keyturn.dialects.huawei.dcs import PRODUCT as DCS
from keyturn.dialects.tencent import TencentDialect
from keyturn.dialects.tencent.redis import PRODUCT as REDIS
from tests.support.alibaba_sdk import acs3_request
from tests.support.fakes import WallClock as AlibabaClock
from tests.support.fakes import memory_replay_guard
from tests.support.huawei_calls import PROJECT, FakeServices, request, reset_path
from tests.support.tencent_raw import tc3_headers

KEY_ID, SECRET, TENANT = "AKIDunitrefusal0001", "unit-secret-0123456789", "1300000009"


class Gate:
    """Records refusals; lets gated calls through (or fails them like the real gate would)."""

    def __init__(self) -> None:
        self.refusals: list[dict[str, Any]] = []
        self.gated = 0
        self.error: e.DomainError | None = None

    async def run(
        self, caller: Any, info: Any, execute: Any, vendor_code: Any, admission: Any = None
    ) -> Any:
        self.gated += 1
        if self.error is not None:
            raise self.error
        return await execute(caller)

    async def rejected(self, caller: Any, **fields: Any) -> None:
        self.refusals.append({"tenant": caller.tenant_id, "key": caller.key_id, **fields})


async def access_key(key_id: str) -> AccessKey:
    if key_id != KEY_ID:
        raise e.UnknownAccessKey()
    return AccessKey(id=KEY_ID, tenant_id=TENANT, secret=Secret(SECRET))


def services(gate: Gate) -> Any:
    clock = AlibabaClock()
    return SimpleNamespace(
        credentials=SimpleNamespace(access_key=access_key),
        clock=clock,
        replay=memory_replay_guard(clock),
        gate=gate,
        metrics=NO_METRICS,
    )


def tencent_request(action: str, key_id: str = KEY_ID, secret: str = SECRET) -> WireRequest:
    body = json.dumps({"InstanceId": "crs-12345678", "Password": "Kt-Unit-Passw0rd"}).encode()
    signed = tc3_headers("keyturn.test", action, body, key_id=key_id, secret=secret)
    headers = {name.lower(): value for name, value in signed.items()}
    return WireRequest(
        method="POST",
        path="/",
        query="",
        headers=headers | {"user-agent": "unit-test"},
        body=body,
        client="10.1.2.3",
    )


async def test_tencent_refusals() -> None:
    gate = Gate()
    dialect = TencentDialect(services(gate), [REDIS])
    await dialect.handle(tencent_request("ResetPassword", key_id="AKIDclaimed"))
    await dialect.handle(tencent_request("ResetPassword", secret="wrong-secret"))
    await dialect.handle(tencent_request("NoSuchAction"))
    junk = WireRequest(method="POST", path="/", query="", headers={}, body=b"{", client="10.9.9.9")
    await dialect.handle(junk)
    assert gate.gated == 0
    assert gate.refusals == [
        {
            "tenant": "",
            "key": "AKIDclaimed",
            "vendor": "tencent",
            "action": "redis:ResetPassword",
            "code": "AuthFailure.SecretIdNotFound",
            "neutral_action": "",
        },
        {
            "tenant": "",
            "key": KEY_ID,
            "vendor": "tencent",
            "action": "redis:ResetPassword",
            "code": "AuthFailure.SignatureFailure",
            "neutral_action": "",
        },
        {
            "tenant": TENANT,
            "key": KEY_ID,
            "vendor": "tencent",
            "action": "redis:NoSuchAction",
            "code": "InvalidAction",
            "neutral_action": "",
        },
        {
            "tenant": "",
            "key": "",
            "vendor": "tencent",
            "action": "",
            "code": gate.refusals[3]["code"],
            "neutral_action": "",
        },
    ]
    assert gate.refusals[3]["code"] != "InternalError"


async def test_tencent_calls_refused_in_the_gate_are_not_recorded_again() -> None:
    gate = Gate()
    gate.error = e.AccessDenied("denied")
    response = await TencentDialect(services(gate), [REDIS]).handle(
        tencent_request("ResetPassword")
    )
    assert b"AuthFailure.UnauthorizedOperation" in response.body
    assert gate.gated == 1 and gate.refusals == []


async def test_alibaba_refusals() -> None:
    gate = Gate()
    dialect = AlibabaDialect(services(gate), [KVSTORE])
    params = {"InstanceId": "r-bp1zxszhcgatnx", "AccountName": "app"}
    for key_id, secret, version in [
        ("LTAIclaimed", SECRET, "2015-01-01"),
        (KEY_ID, "wrong-secret", "2015-01-01"),
        (KEY_ID, SECRET, "1999-01-01"),
    ]:
        query, headers = acs3_request(
            "keyturn.test", "ResetAccountPassword", params, key_id=key_id, secret=secret,
            version=version,
        )  # fmt: skip
        await dialect.handle(
            WireRequest(method="POST", path="/", query=query, headers=headers, client="10.1.2.3")
        )
    assert gate.gated == 0
    assert [(r["tenant"], r["key"], r["action"], r["code"]) for r in gate.refusals] == [
        ("", "LTAIclaimed", "ResetAccountPassword", "InvalidAccessKeyId.NotFound"),
        ("", KEY_ID, "ResetAccountPassword", "SignatureDoesNotMatch"),
        (TENANT, KEY_ID, "ResetAccountPassword", "InvalidVersion"),
    ]


async def test_huawei_refusals() -> None:
    fake = FakeServices()
    dialect = HuaweiDialect(fake, [DCS])  # type: ignore[arg-type]
    body = json.dumps({"new_password": "Kt-Unit-Passw0rd"}).encode()
    await dialect.handle(request("POST", reset_path(), body, ak="HWclaimed"))
    await dialect.handle(request("POST", reset_path(), body, secret="wrong"))
    other = "ffffffffffffffffffffffffffffffff"
    await dialect.handle(request("POST", reset_path(project=other), body, project=None))
    await dialect.handle(request("GET", "/v2/nothing/here"))
    assert [(r["caller"].tenant_id, r["caller"].key_id, r["code"]) for r in fake.refusals] == [
        ("", "HWclaimed", "APIGW.0301"),
        ("", "HWAKUNIT0001", "APIGW.0301"),
        (PROJECT, "HWAKUNIT0001", "111401004"),
        ("", "HWAKUNIT0001", "APIGW.0101"),
    ]
    reset_route = fake.refusals[2]
    assert reset_route["neutral_action"] == "reset_password"
    assert reset_route["action"].startswith("dcs:")
    assert fake.refusals[3]["action"] == "GET /v2/nothing/here"
