"""Managed database secrets through the official secret-manager SDKs, unchanged: Tencent SSM
product secrets (``tencentcloud-sdk-python-ssm``) and Alibaba KMS ``Rds``/``Redis`` secrets
(``alibabacloud-kms20160120``), against a real keyturn server and real throwaway Redis,
PostgreSQL and MariaDB servers.

Each engine: a secret is created (its account made on the engine), its value read and logged in
with; a rotation (``RotateProductSecret`` followed with ``DescribeAsyncRequestInfo``, KMS
``RotateSecret`` followed with ``GetSecretValue``) gives a new password that logs in, while the
old one no longer does (replace mode) and KMS still hands it out as ``ACSPrevious``. The
schedule calls (``UpdateRotationStatus``, ``UpdateSecretRotationPolicy``) are read back. Keys
with policies get the vendor's denial for a secret their policy does not name, and another
tenant's key finds nothing. Every password read is recorded for the session's secret scan.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from alibabacloud_kms20160120 import models as kms_models
from alibabacloud_tea_openapi.exceptions import ClientException

from keyturn.core.audit import AuditOutcome
from keyturn.store.audit_keying import open_audit_log
from tests.support.keys import make_key
from tests.support.keyturn_server import OTHER_KEY_ID, OTHER_KEY_SECRET, TENANT, KeyturnServer
from tests.support.passwords import leaked
from tests.support.sdk import code_of
from tests.support.secret_engines import engine_for, recorded
from tests.support.secret_sdks import (
    kms_create,
    kms_rotate,
    kms_sdk,
    kms_value,
    ssm_call,
    ssm_create,
    ssm_credential,
    ssm_rotate,
    ssm_sdk,
)

pytestmark = pytest.mark.engine


SSM_PRODUCTS = {"redis": "Redis", "postgres": "PostgreSQL", "mysql": "Tdsql-mysql"}


@pytest.mark.parametrize("kind", ["redis", "postgres", "mysql"])
def test_ssm_product_secret_create_read_rotate(
    keyturn: KeyturnServer, request: pytest.FixtureRequest, kind: str
) -> None:
    engine = engine_for(keyturn, request, kind, kms=False)
    client = ssm_sdk(keyturn.endpoint)
    name = f"orders-{kind}-{secrets.token_hex(3)}"
    engine.prepare("app")
    ssm_create(
        client,
        name,
        product=SSM_PRODUCTS[kind],
        instance_id=engine.instance_id,
        prefix="app",
        domains=["%"],
        Description="orders service",
    )
    user, first = ssm_credential(client, name)
    assert user == "app"
    assert engine.login(user, recorded(first))

    ssm_rotate(client, name)
    user2, second = ssm_credential(client, name)
    assert user2 == "app" and second != first
    assert engine.login(user, recorded(second))
    assert not engine.login(user, first)  # replace mode: the old password is gone

    history = ssm_call(client, "DescribeRotationHistory", SecretName=name)
    assert history.TotalCount == len(history.VersionIDs) >= 2
    described = ssm_call(client, "DescribeSecret", SecretName=name)
    assert (described.SecretName, described.SecretType) == (name, 1)
    assert described.ProductName == SSM_PRODUCTS[kind]
    assert described.ResourceID == engine.instance_id
    assert described.RotationStatus is False
    listed = ssm_call(client, "ListSecrets", SearchSecretName=name)
    assert [m.SecretName for m in listed.SecretMetadatas] == [name]

    ssm_call(
        client,
        "UpdateRotationStatus",
        SecretName=name,
        EnableRotation=True,
        Frequency=30,
        RotationBeginTime="2030-01-01 02:00:00",
    )
    detail = ssm_call(client, "DescribeRotationDetail", SecretName=name)
    assert (detail.EnableRotation, detail.Frequency) == (True, 30)
    assert detail.NextRotateBeginTime.startswith("2030-01-01 02:00")
    assert leaked(keyturn, [first, second]) == []


def test_ssm_scheduled_rotation(keyturn: KeyturnServer, request: pytest.FixtureRequest) -> None:
    """``UpdateRotationStatus`` with a ``RotationBeginTime`` two seconds ahead (UTC): the
    schedule rotates the secret at that time, once, and the next slot is a Frequency later."""
    engine = engine_for(keyturn, request, "redis", kms=False)
    client = ssm_sdk(keyturn.endpoint)
    name = "scheduled-" + secrets.token_hex(3)
    ssm_create(client, name, product="Redis", instance_id=engine.instance_id, prefix="sched")
    user, first = ssm_credential(client, name)
    begin = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    ssm_call(
        client,
        "UpdateRotationStatus",
        SecretName=name,
        EnableRotation=True,
        Frequency=1,
        RotationBeginTime=begin.strftime("%Y-%m-%d %H:%M:%S"),
    )
    deadline = time.monotonic() + 30
    while (second := ssm_credential(client, name)[1]) == first:
        assert time.monotonic() < deadline, "the scheduled rotation did not happen"
        time.sleep(0.1)
    assert engine.login(user, recorded(second)) and not engine.login(user, recorded(first))
    detail = ssm_call(client, "DescribeRotationDetail", SecretName=name)
    assert detail.EnableRotation and detail.LatestRotateTime
    assert detail.NextRotateBeginTime == (begin + timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
    time.sleep(1.5)  # a tick or more later: still exactly one scheduled rotation
    history = ssm_call(client, "DescribeRotationHistory", SecretName=name)
    assert history.TotalCount == 2  # the first version and the scheduled one


def test_other_signatures_and_methods(
    keyturn: KeyturnServer, request: pytest.FixtureRequest
) -> None:
    """The same secrets through SSM's legacy HmacSHA256/HmacSHA1 signatures and GET, and KMS's
    RPC HMAC-SHA1 signature (the Tea SDK's ``signature_algorithm='v2'``)."""
    tencent = engine_for(keyturn, request, "redis", kms=False)
    name = "signed-" + secrets.token_hex(3)
    ssm_create(
        ssm_sdk(keyturn.endpoint),
        name,
        product="Redis",
        instance_id=tencent.instance_id,
        prefix="sig",
    )
    expected = ssm_credential(ssm_sdk(keyturn.endpoint), name)
    for sign_method, method in (("HmacSHA256", "POST"), ("HmacSHA1", "GET"), (None, "GET")):
        client = ssm_sdk(keyturn.endpoint, sign_method=sign_method, method=method)
        assert ssm_credential(client, name) == expected, (sign_method, method)
    recorded(expected[1])
    alibaba = engine_for(keyturn, request, "redis", kms=True)
    name = "kms-" + name  # names are the tenant's, whichever API made the secret
    kms_create(
        kms_sdk(keyturn.endpoint, rpc=True),
        name,
        secret_type="Redis",
        instance_id=alibaba.instance_id,
        account="sigkms",
    )
    user, password, _ = kms_value(kms_sdk(keyturn.endpoint, rpc=True), name)
    assert (user, password) == kms_value(kms_sdk(keyturn.endpoint), name)[:2]
    assert alibaba.login(user, recorded(password))


def test_ssm_error_codes(keyturn: KeyturnServer, request: pytest.FixtureRequest) -> None:
    engine = engine_for(keyturn, request, "redis", kms=False)
    client = ssm_sdk(keyturn.endpoint)
    name = "codes-" + secrets.token_hex(3)
    ssm_create(client, name, product="Redis", instance_id=engine.instance_id, prefix="codes")

    def create(**fields: object) -> None:
        values = {
            "SecretName": "n-" + secrets.token_hex(3),
            "UserNamePrefix": "x",
            "ProductName": "Redis",
            "InstanceID": engine.instance_id,
            "Domains": ["%"],
            "PrivilegesList": [],
            **fields,
        }
        ssm_call(client, "CreateProductSecret", **values)

    assert code_of(lambda: create(SecretName=name)) == "ResourceInUse.SecretExists"
    assert code_of(lambda: create(InstanceID="crs-00000000")) == "ResourceNotFound"
    assert code_of(lambda: create(ProductName="Cvm")) == "InvalidParameterValue"
    assert code_of(lambda: create(UserNamePrefix="9bad")) == "InvalidParameterValue"
    assert code_of(lambda: create(EnableRotation=True)) == "MissingParameter"
    missing = "ResourceNotFound.SecretNotExist"
    assert code_of(lambda: ssm_credential(client, "nope-" + name)) == missing
    assert code_of(lambda: ssm_call(client, "RotateProductSecret", SecretName="n0pe")) == missing
    assert code_of(lambda: ssm_credential(client, name, "v-none")) == "ResourceNotFound"
    flow = code_of(lambda: ssm_call(client, "DescribeAsyncRequestInfo", FlowID=12345))
    assert flow == "ResourceNotFound"
    assert code_of(lambda: ssm_call(client, "GetSecretValue")) == "MissingParameter"


@pytest.mark.parametrize("kind", ["redis", "postgres", "mysql"])
def test_kms_secret_create_read_rotate(
    keyturn: KeyturnServer, request: pytest.FixtureRequest, kind: str
) -> None:
    engine = engine_for(keyturn, request, kind, kms=True)
    client = kms_sdk(keyturn.endpoint)
    name = f"orders-{kind}-{secrets.token_hex(3)}"
    secret_type = "Redis" if kind == "redis" else "Rds"
    engine.prepare("appkms")
    created = kms_create(
        client, name, secret_type=secret_type, instance_id=engine.instance_id, account="appkms"
    )
    assert (created.secret_name, created.secret_type) == (name, secret_type)
    assert created.automatic_rotation == "Disabled"
    user, first, body = kms_value(client, name)
    assert user == "appkms"
    assert body.version_stages.version_stage == ["ACSCurrent"]
    assert engine.login(user, recorded(first))

    version = kms_rotate(client, name)
    user2, second, body2 = kms_value(client, name, stage="ACSCurrent")
    assert (user2, body2.version_id) == ("appkms", version) and second != first
    assert engine.login(user, recorded(second))
    assert not engine.login(user, first)  # replace mode: the old password is gone
    _, previous, body3 = kms_value(client, name, stage="ACSPrevious")
    assert previous == first and body3.version_stages.version_stage == ["ACSPrevious"]
    assert kms_value(client, name, version_id=version)[1] == second
    arn = f"acs:kms:cn-hangzhou:{TENANT}:secret/{name}"
    assert kms_value(client, arn)[1] == second  # a SecretName may be the secret's ARN

    ids = client.list_secret_version_ids(
        kms_models.ListSecretVersionIdsRequest(secret_name=name)
    ).body
    stages = {v.version_id: v.version_stages.version_stage for v in ids.version_ids.version_id}
    assert stages[version] == ["ACSCurrent"] and ["ACSPrevious"] in stages.values()

    client.update_secret_rotation_policy(
        kms_models.UpdateSecretRotationPolicyRequest(
            secret_name=name, enable_automatic_rotation=True, rotation_interval="7d"
        )
    )
    described = client.describe_secret(kms_models.DescribeSecretRequest(secret_name=name)).body
    assert (described.automatic_rotation, described.rotation_interval) == ("Enabled", "604800s")
    assert described.secret_type == secret_type and described.next_rotation_date
    assert described.arn.endswith(f":{TENANT}:secret/{name}")
    listed = client.list_secrets(kms_models.ListSecretsRequest(page_size=100)).body
    assert name in [s.secret_name for s in listed.secret_list.secret]
    assert leaked(keyturn, [first, second]) == []


def _kms_error(call: Callable[[], object]) -> tuple[str, int]:
    with pytest.raises(ClientException) as caught:
        call()
    return str(caught.value.code), int(caught.value.status_code)


def test_kms_error_codes(keyturn: KeyturnServer, request: pytest.FixtureRequest) -> None:
    engine = engine_for(keyturn, request, "redis", kms=True)
    client = kms_sdk(keyturn.endpoint)
    name = "codes-" + secrets.token_hex(3)
    kms_create(client, name, secret_type="Redis", instance_id=engine.instance_id, account="c1")
    assert _kms_error(
        lambda: kms_create(
            client, name, secret_type="Redis", instance_id=engine.instance_id, account="c2"
        )
    ) == ("Rejected.ResourceExist", 400)
    not_found = ("Forbidden.ResourceNotFound", 404)
    assert _kms_error(lambda: kms_value(client, "nope-" + name)) == not_found
    assert _kms_error(lambda: kms_value(client, name, version_id="v-none")) == not_found
    assert (
        _kms_error(
            lambda: kms_create(
                client, "x" + name, secret_type="Rds", instance_id=engine.instance_id, account="c3"
            )
        )
        == not_found
    )  # a kvstore instance is no Rds instance
    assert _kms_error(lambda: kms_value(client, name, stage="ACSPending"))[1] == 400
    bad_interval = kms_models.UpdateSecretRotationPolicyRequest(
        secret_name=name, enable_automatic_rotation=True, rotation_interval="7w"
    )
    assert _kms_error(lambda: client.update_secret_rotation_policy(bad_interval))[1] == 400


def test_policies_and_tenants(keyturn: KeyturnServer, request: pytest.FixtureRequest) -> None:
    """A key whose policy names one secret reads that one, gets the vendor's denial for the
    other and lists only the one; another tenant's key finds neither."""
    tencent = engine_for(keyturn, request, "redis", kms=False)
    suffix = secrets.token_hex(3)
    ssm = ssm_sdk(keyturn.endpoint)
    for name in (f"allowed-{suffix}", f"other-{suffix}"):
        ssm_create(ssm, name, product="Redis", instance_id=tencent.instance_id, prefix=name[:5])
    cam = {
        "version": "2.0",
        "statement": [
            {
                "effect": "allow",
                "action": ["ssm:GetSecretValue", "ssm:ListSecrets"],
                "resource": [f"qcs::ssm::uin/{TENANT}:secret/allowed-*"],
            }
        ],
    }
    reader_key, key_secret = make_key(keyturn, TENANT, inline=cam)
    reader = ssm_sdk(keyturn.endpoint, key_id=reader_key, secret=key_secret)
    recorded(ssm_credential(reader, f"allowed-{suffix}")[1])
    denied = code_of(lambda: ssm_credential(reader, f"other-{suffix}"))
    assert denied == "AuthFailure.UnauthorizedOperation"
    listed = ssm_call(reader, "ListSecrets", SearchSecretName=suffix)
    assert [m.SecretName for m in listed.SecretMetadatas] == [f"allowed-{suffix}"]
    rotate = code_of(
        lambda: ssm_call(reader, "RotateProductSecret", SecretName=f"allowed-{suffix}")
    )
    assert rotate == "AuthFailure.UnauthorizedOperation"
    stranger = ssm_sdk(keyturn.endpoint, key_id=OTHER_KEY_ID, secret=OTHER_KEY_SECRET)
    assert code_of(lambda: ssm_credential(stranger, f"allowed-{suffix}")) == (
        "ResourceNotFound.SecretNotExist"
    )

    alibaba = engine_for(keyturn, request, "redis", kms=True)
    kms = kms_sdk(keyturn.endpoint)
    allowed, other = f"allowed-kms-{suffix}", f"other-kms-{suffix}"
    for name, account in ((allowed, "kallowed"), (other, "kother")):
        kms_create(kms, name, secret_type="Redis", instance_id=alibaba.instance_id, account=account)
    ram = {
        "Version": "1",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["kms:GetSecretValue"],
                "Resource": [f"acs:kms:*:{TENANT}:secret/allowed-*"],
            }
        ],
    }
    key_id, key_secret = make_key(keyturn, TENANT, inline=ram)
    reader_kms = kms_sdk(keyturn.endpoint, key_id=key_id, secret=key_secret)
    recorded(kms_value(reader_kms, allowed)[1])
    assert _kms_error(lambda: kms_value(reader_kms, other)) == ("Forbidden.NoPermission", 403)
    stranger_kms = kms_sdk(keyturn.endpoint, key_id=OTHER_KEY_ID, secret=OTHER_KEY_SECRET)
    assert _kms_error(lambda: kms_value(stranger_kms, allowed)) == (
        "Forbidden.ResourceNotFound",
        404,
    )
    arn = f"acs:kms:cn-hangzhou:{TENANT}:secret/{allowed}"
    assert _kms_error(lambda: kms_value(stranger_kms, arn)) == ("Forbidden.ResourceNotFound", 404)
    assert kms_value(reader_kms, arn)[1]  # the policy names the secret, by name or by ARN
    # Every read is audited, allowed or denied, with the secret's resource name.
    records = keyturn.with_store(
        lambda store: open_audit_log(store, keyturn.data_dir).search(
            tenant=TENANT, action="ssm:GetSecretValue", limit=1000
        )
    )
    seen = {(r.event.resource, r.event.outcome, r.event.key_id) for r in records}
    assert (
        f"qcs::ssm:ap-guangzhou:uin/{TENANT}:secret/other-{suffix}",
        AuditOutcome.DENIED,
        reader_key,
    ) in seen
    assert (
        f"qcs::ssm:ap-guangzhou:uin/{TENANT}:secret/allowed-{suffix}",
        AuditOutcome.SUCCEEDED,
        reader_key,
    ) in seen
    # A KMS secret is no SSM secret, even for its own tenant (and the other way round).
    assert code_of(lambda: ssm_credential(ssm, other)) == "ResourceNotFound.SecretNotExist"
    assert _kms_error(lambda: kms_value(kms, f"other-{suffix}")) == (
        "Forbidden.ResourceNotFound",
        404,
    )
