"""The secret-manager dialects' parameter reading and answer fields, without I/O: Tencent SSM
(``ssm_params``, FlowID numbers) and Alibaba KMS (``kms_params``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyturn.core.access import Policy, decide
from keyturn.core.errors import (
    AccessDenied,
    DomainError,
    InternalError,
    InvalidParameter,
    InvalidParameterValue,
    MissingParameter,
    OperationInProgress,
    RequestThrottled,
    SecretExists,
    SecretNotFound,
    SecretVersionNotFound,
)
from keyturn.core.model import Product
from keyturn.core.secret_manager import SecretSubType
from keyturn.dialects.alibaba import kms_params as k
from keyturn.dialects.alibaba.errors import ERRORS as ALIBABA_ERRORS
from keyturn.dialects.alibaba.kms import PRODUCT as KMS
from keyturn.dialects.alibaba.params import Params as AliParams
from keyturn.dialects.tencent import ssm_params as p
from keyturn.dialects.tencent.errors import ERRORS as TENCENT_ERRORS
from keyturn.dialects.tencent.params import Params
from keyturn.dialects.tencent.ssm import PRODUCT as SSM
from keyturn.dialects.tencent.ssm import flow_number, flow_of


def test_ssm_secret_names() -> None:
    assert p.secret_name(Params({"SecretName": "orders-redis_1"})) == "orders-redis_1"
    for bad in ("-lead", "has space", "a" * 129, "sl/ash", "ünï"):
        with pytest.raises(InvalidParameterValue):
            p.secret_name(Params({"SecretName": bad}))
    with pytest.raises(MissingParameter):
        p.secret_name(Params({}))
    with pytest.raises(InvalidParameter):
        p.secret_name(Params({"SecretName": 5}))


def test_ssm_products_prefixes_and_domains() -> None:
    assert p.product_of(Params({"ProductName": "Redis"})) is Product.TENCENT_REDIS
    assert p.product_of(Params({"ProductName": "Mysql"})) is Product.TENCENT_TDMYSQL
    assert p.product_of(Params({"ProductName": "PostgreSQL"})) is Product.TENCENT_POSTGRES
    with pytest.raises(InvalidParameterValue):
        p.product_of(Params({"ProductName": "Cvm"}))
    assert p.user_name_prefix(Params({"UserNamePrefix": "app_1"})) == "app_1"
    for bad in ("1app", "toolongprefix", "a-b", ""):
        with pytest.raises(DomainError):
            p.user_name_prefix(Params({"UserNamePrefix": bad}))
    assert p.domains(Params({})) == ["%"]
    assert p.domains(Params({"Domains": ["10.0.0.%"]})) == ["10.0.0.%"]
    with pytest.raises(InvalidParameterValue):
        p.domains(Params({"Domains": ["a'b"]}))
    with pytest.raises(InvalidParameterValue):
        p.domains(Params({"Domains": ["%"] * 11}))


def test_ssm_rotation_fields() -> None:
    assert p.frequency(Params({"Frequency": 30}), "Frequency", None) == timedelta(days=30)
    assert p.frequency(Params({}), "Frequency", None) is None
    assert p.frequency(Params({}), "Frequency", 1) == timedelta(days=1)
    for bad in (0, 366, "x"):
        with pytest.raises(DomainError):
            p.frequency(Params({"Frequency": bad}), "Frequency", None)
    begin = p.begin_time(Params({"RotationBeginTime": "2026-12-06 02:00:00"}))
    assert begin == datetime(2026, 12, 6, 2, tzinfo=UTC)
    with pytest.raises(InvalidParameterValue):
        p.begin_time(Params({"RotationBeginTime": "2026-12-06T02:00:00Z"}))
    assert p.days(timedelta(hours=1)) == 1
    assert p.days(None) == 0
    assert p.text_time(begin) == "2026-12-06 02:00:00"
    assert p.unix(begin) == int(begin.timestamp())


def test_ssm_version_ids() -> None:
    assert p.version_stage(Params({})) == (False, None)
    assert p.version_stage(Params({"VersionId": "SSM_Current"})) == (False, None)
    assert p.version_stage(Params({"VersionId": "SSM_Previous"})) == (True, None)
    assert p.version_stage(Params({"VersionId": "v-1"})) == (False, "v-1")
    with pytest.raises(InvalidParameterValue):
        p.version_stage(Params({"VersionId": "v" * 65}))
    value = json.loads(p.secret_string("app", 'pa"ss'))
    assert value == {"UserName": "app", "Password": 'pa"ss'}


@given(st.integers(min_value=1, max_value=2**52 - 1))
def test_flow_ids_round_trip_as_integers(value: int) -> None:
    flow_id = f"flow-{value:013x}"
    number = flow_number(flow_id)
    # Below 2**52: an int64 SDK (Go, Java) and a JavaScript number hold it.
    assert isinstance(number, int) and number < 2**52
    assert flow_of(Params({"FlowID": number})) == flow_id
    assert flow_of(Params({"FlowID": str(number)})) == flow_id


def test_flow_ids_refused() -> None:
    assert flow_number("other") == "other"
    assert flow_of(Params({"FlowID": "flow-x"})) == "flow-x"
    for bad in (True, -1, 2**52, 2**128, 1.5, [1], "x" * 65, ""):
        with pytest.raises(DomainError):
            flow_of(Params({"FlowID": bad}))
    with pytest.raises(MissingParameter):
        flow_of(Params({}))


def _kms(**values: str) -> AliParams:
    return AliParams(values)


def test_kms_names_versions_flags_and_intervals() -> None:
    assert k.secret_name(_kms(SecretName="db/orders@prod"), "1") == "db/orders@prod"
    for bad in ("acs/x", "a b", "a" * 193):
        with pytest.raises(InvalidParameterValue):
            k.secret_name(_kms(SecretName=bad), "1")
    arn = "acs:kms:cn-hangzhou:1300000001:secret/orders"
    assert k.secret_name(_kms(SecretName=arn), "1300000001") == "orders"
    assert k.resource_of({"SecretName": arn}) == "orders"
    assert k.resource_of({"SecretName": "orders"}) == "orders"
    assert k.resource_of({}) is None
    with pytest.raises(SecretNotFound):
        k.secret_name(_kms(SecretName=arn), "1300000002")
    assert k.version_id(_kms()) is None
    with pytest.raises(MissingParameter):
        k.version_id(_kms(), required=True)
    with pytest.raises(InvalidParameterValue):
        k.version_id(_kms(VersionId="a b"))
    assert k.flag(_kms(X="True"), "X", False) is True
    assert k.flag(_kms(), "X", True) is True
    with pytest.raises(InvalidParameter):
        k.flag(_kms(X="yes"), "X", False)
    assert k.interval(_kms(RotationInterval="7d")) == timedelta(days=7)
    assert k.interval(_kms(RotationInterval="3600s")) == timedelta(hours=1)
    assert k.interval(_kms()) is None
    for bad in ("7", "0d", "7w", "99999999999d", "1.5h"):
        with pytest.raises(InvalidParameterValue):
            k.interval(_kms(RotationInterval=bad))
    assert k.interval_text(timedelta(days=7)) == "604800s"


def test_kms_database_secrets() -> None:
    redis = k.database_secret(
        _kms(
            SecretType="Redis",
            ExtendedConfig=json.dumps({"InstanceId": "r-1", "SecretSubType": "SingleUser"}),
            SecretData=json.dumps({"AccountName": "app", "AccountPassword": "x"}),
        )
    )
    assert redis == k.DatabaseSecret("Redis", "r-1", "app", SecretSubType.SINGLE_USER)
    rds = k.database_secret(
        _kms(
            SecretType="Rds",
            ExtendedConfig=json.dumps({"DBInstanceId": "pg-1", "SecretSubType": "DoubleUsers"}),
            SecretData=json.dumps({"Accounts": [{"AccountName": "a"}, {"AccountName": "b"}]}),
        )
    )
    assert rds == k.DatabaseSecret("Rds", "pg-1", "a", SecretSubType.DOUBLE_USERS)
    good = {"SecretType": "Rds", "ExtendedConfig": '{"DBInstanceId":"x"}', "SecretData": "{}"}
    cases: list[dict[str, str]] = [
        {**good, "SecretType": "Generic"},
        {**good, "ExtendedConfig": "[]"},
        {**good, "ExtendedConfig": "{"},
        {**good, "ExtendedConfig": '{"InstanceId":"x"}'},
        {**good, "ExtendedConfig": '{"DBInstanceId":7}'},
        {**good, "ExtendedConfig": '{"DBInstanceId":"x","SecretSubType":"Triple"}'},
        {**good, "ExtendedConfig": "[" * 10000},
        {**good, "SecretData": '{"AccountName":""}'},
        {**good, "SecretData": '{"Accounts":[]}'},
        {**good, "ExtendedConfig": " " * (k.MAX_JSON + 1)},
    ]
    for values in cases:
        with pytest.raises(DomainError):
            k.database_secret(AliParams(values))
    config = json.loads(k.extended_config("Rds", "pg-1", SecretSubType.SINGLE_USER))
    assert config["DBInstanceId"] == "pg-1"
    assert config["SecretSubType"] == "SingleUser"
    assert json.loads(k.secret_data("a", "p")) == {"AccountName": "a", "AccountPassword": "p"}
    assert k.arn("cn-hangzhou", "123", "n") == "acs:kms:cn-hangzhou:123:secret/n"
    assert k.page(_kms(PageNumber="2", PageSize="5")) == (2, 5)
    with pytest.raises(InvalidParameterValue):
        k.page(_kms(PageSize="101"))


def test_kms_overlap_in_custom_data() -> None:
    base = {
        "SecretType": "Redis",
        "SecretData": '{"AccountName":"app"}',
    }
    config = {"InstanceId": "r-1", "CustomData": {"Overlap": "10m"}}
    found = k.database_secret(AliParams({**base, "ExtendedConfig": json.dumps(config)}))
    assert found.overlap == timedelta(minutes=10)
    written = json.loads(k.extended_config("Redis", "r-1", found.sub_type, found.overlap))
    assert written["CustomData"] == {"Overlap": "600s"}
    customs: list[object] = [[], {"Overlap": 10}, {"Overlap": "1x"}, {"Overlap": "x" * 40}]
    for custom in customs:
        bad = json.dumps({"InstanceId": "r-1", "CustomData": custom})
        with pytest.raises(InvalidParameterValue):
            k.database_secret(AliParams({**base, "ExtendedConfig": bad}))


def test_vendor_codes_and_resource_names() -> None:
    assert SSM.resource_name("ap-guangzhou", "1300000001", "orders") == (
        "qcs::ssm:ap-guangzhou:uin/1300000001:secret/orders"
    )
    assert KMS.resource_name("cn-hangzhou", "1300000001", "orders") == (
        "acs:kms:cn-hangzhou:1300000001:secret/orders"
    )
    tencent = {
        SecretNotFound(): "ResourceNotFound.SecretNotExist",
        SecretExists(): "ResourceInUse.SecretExists",
        AccessDenied(): "AuthFailure.UnauthorizedOperation",
        OperationInProgress(): "FailedOperation.RotationForbidden",
        RequestThrottled(): "RequestLimitExceeded",
        InternalError(): "InternalError",
    }
    for error, code in tencent.items():
        assert TENCENT_ERRORS.look_up(error, SSM.codes) == code
    alibaba = {
        SecretNotFound(): ("Forbidden.ResourceNotFound", 404),
        SecretVersionNotFound(): ("Forbidden.ResourceNotFound", 404),
        AccessDenied(): ("Forbidden.NoPermission", 403),
        SecretExists(): ("Rejected.ResourceExist", 400),
        RequestThrottled(): ("Rejected.Throttling", 429),
        InternalError(): ("InternalError", 500),
    }
    for error, (code, status) in alibaba.items():
        entry = ALIBABA_ERRORS.look_up(error, KMS.codes)
        assert (entry.code, entry.status) == (code, status)


def test_policies_name_secrets() -> None:
    cam = Policy.parse(
        {
            "version": "2.0",
            "statement": [
                {
                    "effect": "allow",
                    "action": "ssm:GetSecretValue",
                    "resource": "qcs::ssm::uin/1300000001:secret/orders-*",
                }
            ],
        }
    )
    allowed = SSM.resource_name("ap-guangzhou", "1300000001", "orders-redis")
    other = SSM.resource_name("ap-guangzhou", "1300000001", "billing")
    assert decide([cam], "ssm:GetSecretValue", allowed).allowed
    assert not decide([cam], "ssm:GetSecretValue", other).allowed
    assert not decide([cam], "ssm:RotateProductSecret", allowed).allowed
    ram = Policy.parse(
        {
            "Version": "1",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "kms:GetSecretValue",
                    "Resource": "acs:kms:*:1300000001:secret/orders-*",
                }
            ],
        }
    )
    assert decide(
        [ram], "kms:GetSecretValue", KMS.resource_name("cn-hangzhou", "1300000001", "orders-1")
    ).allowed
    assert not decide(
        [ram], "kms:GetSecretValue", KMS.resource_name("cn-hangzhou", "1300000002", "orders-1")
    ).allowed


def test_ssm_overlap_tag() -> None:
    tag = {"TagKey": "keyturn:overlap", "TagValue": "10m"}
    assert p.overlap(Params({})) is None
    assert p.overlap(Params({"Tags": [{"TagKey": "env", "TagValue": "x"}]})) is None
    assert p.overlap(Params({"Tags": [tag]})) == timedelta(minutes=10)
    bad: list[object] = [
        "x",
        [1],
        [tag] * 51,
        [{"TagKey": "keyturn:overlap", "TagValue": 5}],
        [{"TagKey": "keyturn:overlap", "TagValue": "soon"}],
    ]
    for tags in bad:
        with pytest.raises(DomainError):
            p.overlap(Params({"Tags": tags}))
