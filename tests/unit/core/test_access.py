"""``keyturn.core.access``: policy documents in each vendor's shape, wildcards, case rules, the
clouds' decision rule (explicit deny wins, no matching allow denies) and malformed documents."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyturn.core.access import (
    MAX_DOCUMENT,
    Policy,
    check_policy_name,
    decide,
    labelled,
    missing_policy,
    validated_document,
)
from keyturn.core.errors import InvalidParameterValue

TENANT = "1300000001"
CRS = f"qcs::redis:ap-guangzhou:uin/{TENANT}:instance/crs-5a4py64p"
KV = "acs:kvstore:cn-hangzhou:1234567890:instance/r-bp1zxszhcgatnx"
DCS = (
    "dcs:cn-north-4:0a1b2c3d4e5f60718293a4b5c6d7e8f9:instance:6d1d7a5c-1111-2222-3333-444455556666"
)

CAM = {
    "version": "2.0",
    "statement": [
        {
            "effect": "allow",
            "action": ["redis:ResetPassword"],
            "resource": [f"qcs::redis:*:uin/{TENANT}:instance/crs-*"],
        }
    ],
}
RAM = {
    "Version": "1",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "kvstore:ResetAccountPassword",
            "Resource": "acs:kvstore:*:1234567890:instance/r-bp1*",
        }
    ],
}
IAM: dict[str, Any] = {
    "Version": "1.1",
    "Statement": [{"Effect": "Allow", "Action": ["dcs:instance:modifyAuthInfo"]}],
}


def allowed(document: Any, action: str, resource: str) -> bool:
    return decide([Policy.parse(document)], action, resource).allowed


def statement(**fields: Any) -> dict[str, Any]:
    return {"statement": [{"effect": "allow", "action": "*", "resource": "*", **fields}]}


def test_tencent_cam_shape() -> None:
    assert allowed(CAM, "redis:ResetPassword", CRS)
    assert not allowed(CAM, "redis:DescribeInstances", CRS)
    assert not allowed(CAM, "redis:ResetPassword", CRS.replace("crs-", "cdb-"))
    assert not allowed(CAM, "redis:ResetPassword", CRS.replace(TENANT, "1300000002"))
    # CAM also writes actions as name/<service>:<action>.
    named = statement(action="name/redis:ResetPassword", resource=CRS)
    assert allowed(named, "redis:ResetPassword", CRS)


def test_alibaba_ram_shape_with_single_strings() -> None:
    assert allowed(RAM, "kvstore:ResetAccountPassword", KV)
    assert allowed(json.dumps(RAM), "kvstore:ResetAccountPassword", KV)
    assert not allowed(RAM, "kvstore:ResetAccountPassword", KV.replace("r-bp1", "r-zz1"))


def test_huawei_iam_without_resource_means_every_resource() -> None:
    assert allowed(IAM, "dcs:instance:modifyAuthInfo", DCS)
    assert not allowed(IAM, "dcs:instance:get", DCS)
    v5 = {**IAM, "Version": "5.0"}
    assert allowed(v5, "dcs:instance:modifyAuthInfo", DCS)
    # Only Huawei's versions may leave the resource out.
    with pytest.raises(InvalidParameterValue, match="resource"):
        Policy.parse({**IAM, "Version": "1"})
    with pytest.raises(InvalidParameterValue, match="resource"):
        Policy.parse({"statement": [{"effect": "allow", "action": "redis:*"}]})


def test_huawei_resource_service_segment_is_case_insensitive() -> None:
    upper = {
        "Version": "1.1",
        "Statement": [{**IAM["Statement"][0], "Resource": "DCS:*:*:instance:*"}],
    }
    assert allowed(upper, "dcs:instance:modifyAuthInfo", DCS)


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("redis:*", "redis:ResetPassword", True),
        ("redis:Reset*", "redis:ResetPassword", True),
        ("redis:Describe*", "redis:ResetPassword", False),
        ("*", "dcs:instance:modifyAuthInfo", True),
        ("dcs:instance:*", "dcs:instance:modifyAuthInfo", True),
        ("dcs:*:modifyAuthInfo", "dcs:instance:modifyAuthInfo", True),
        ("redis:ResetPasswor?", "redis:ResetPassword", True),
        ("redis:ResetPasswor?", "redis:ResetPasswordX", False),
        # Patterns are whole-string: no implicit prefix or suffix match.
        ("redis:Reset", "redis:ResetPassword", False),
        ("edis:ResetPassword", "redis:ResetPassword", False),
        # Regex metacharacters are literal.
        ("redis:Reset.assword", "redis:ResetPassword", False),
    ],
)
def test_action_wildcards(pattern: str, value: str, expected: bool) -> None:
    assert allowed(statement(action=pattern), value, CRS) is expected


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("*", True),
        (f"qcs::redis:*:uin/{TENANT}:instance/*", True),
        (f"qcs::redis:ap-guangzhou:uin/{TENANT}:instance/crs-5a4p*", True),
        (f"qcs::redis:ap-shanghai:uin/{TENANT}:instance/*", False),
        (f"qcs::redis:*:uin/{TENANT}:instance/crs-5a4py64?", True),
        (f"qcs::redis:*:uin/{TENANT}:instance/crs-5A4PY64P", False),
        (f"QCS::redis:*:uin/{TENANT}:instance/crs-5a4py64p", True),
        (f"qcs::REDIS:*:uin/{TENANT}:instance/crs-5a4py64p", False),
        ("qcs::redis:*:uin/1300000002:instance/*", False),
        # CAM: an empty service, region or account segment means any.
        (f"qcs::redis::uin/{TENANT}:instance/crs-*", True),
        ("qcs::redis:::instance/crs-5a4py64p", True),
        ("qcs:::ap-guangzhou::instance/*", True),
        ("qcs:::ap-shanghai::instance/*", False),
        ("qcs::redis:::instance/", False),
    ],
)
def test_resource_wildcards_and_case(pattern: str, expected: bool) -> None:
    assert allowed(statement(resource=pattern), "redis:ResetPassword", CRS) is expected


def test_actions_compare_case_insensitively_and_keys_in_any_case() -> None:
    document = {
        "STATEMENT": [{"EFFECT": "ALLOW", "Action": "REDIS:resetpassword", "rEsOuRcE": "*"}]
    }
    assert allowed(document, "redis:ResetPassword", CRS)


def test_explicit_deny_wins_in_any_order_and_across_policies() -> None:
    allow_all = Policy.parse(statement(), name="everything")
    deny = Policy.parse(
        {"statement": [{"effect": "deny", "action": "redis:Reset*", "resource": CRS}]},
        name="no-resets",
    )
    for order in ([allow_all, deny], [deny, allow_all]):
        decision = decide(order, "redis:ResetPassword", CRS)
        assert not decision.allowed
        assert decision.reason == "explicitly denied by statement 0 of policy no-resets"
    decision = decide([allow_all, deny], "redis:DescribeInstances", CRS)
    assert decision.allowed and decision.reason == "allowed by statement 0 of policy everything"
    within = Policy.parse(
        {
            "statement": [
                {"effect": "allow", "action": "*", "resource": "*", "sid": "all"},
                {"effect": "deny", "action": "*", "resource": CRS, "sid": "not-this"},
            ]
        }
    )
    decision = decide([within], "redis:ResetPassword", CRS)
    assert decision.reason == "explicitly denied by statement 1 (not-this) of policy (inline)"


def test_implicit_deny() -> None:
    decision = decide([Policy.parse(CAM)], "redis:DescribeInstances", CRS)
    assert not decision.allowed
    assert decision.reason == "no statement allows this action on this resource"
    nothing = decide([], "redis:ResetPassword", CRS)
    assert not nothing.allowed and "empty set of policies" in nothing.reason


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{not json", "is not JSON"),
        ("[1, 2]", "must be an object"),
        ({}, "has no statement list"),
        ({"statement": []}, "has no statement list"),
        ({"statement": "allow everything"}, "has no statement list"),
        ({"statement": [42]}, "statement 0 must be an object"),
        (statement(effect="permit"), "effect must be allow or deny"),
        (statement(effect=True), "effect must be allow or deny"),
        ({"statement": [{"effect": "allow", "resource": "*"}]}, "action must be a string"),
        (statement(action=[]), "action must be a non-empty list"),
        (statement(action=["redis:*", 3]), "action must be a non-empty list"),
        (statement(action={"redis": "*"}), "action must be a string or a list"),
        (statement(action="ResetPassword"), "vendor-qualified"),
        (statement(resource="crs-5a4py64p"), "vendor-qualified"),
        (statement(resource=""), "resource must be a non-empty list"),
        (statement(condition={"ip_equal": {"qcs:ip": "10.0.0.1"}}), "condition is not supported"),
        (statement(NotAction="redis:*"), "notaction is not supported"),
        (statement(NotResource="*"), "notresource is not supported"),
        (statement(principal={"qcs": "*"}), "principal is not supported"),
        (statement(actions="redis:*"), "unknown element 'actions'"),
        ("[" * 100_000, "too long"),
        ("[" * 50_000, "is not JSON"),
    ],
)
def test_malformed_documents(document: Any, message: str) -> None:
    with pytest.raises(InvalidParameterValue, match=message) as caught:
        Policy.parse(document, name="p1")
    # Errors name the policy and never echo the document.
    assert "p1" in caught.value.message
    assert "ip_equal" not in caught.value.message


def test_validated_document_keeps_the_authors_shape() -> None:
    text = validated_document(json.dumps(RAM, indent=4))
    assert json.loads(text) == RAM and "\n" not in text
    assert validated_document(CAM) == json.dumps(CAM, separators=(",", ":"))
    with pytest.raises(InvalidParameterValue, match="longer than"):
        validated_document(statement(resource=["acs:" + "x" * 100] * (MAX_DOCUMENT // 100)))
    with pytest.raises(InvalidParameterValue, match="not JSON"):
        validated_document({"statement": [{"effect": "allow", "action": "*", "resource": {1}}]})


def test_labels_name_stored_documents_and_missing_ones_deny_everything() -> None:
    text = labelled(validated_document(CAM), "redis-reset")
    decision = decide([Policy.parse(text)], "redis:ResetPassword", CRS)
    assert decision.reason == "allowed by statement 0 of policy redis-reset"
    # An explicit name given to parse wins over the label.
    assert Policy.parse(text, name="other").name == "other"
    gone = Policy.parse(missing_policy("vanished"))
    decision = decide([Policy.parse(statement()), gone], "redis:DescribeInstances", CRS)
    assert not decision.allowed and "vanished (missing" in decision.reason
    assert Policy.parse(labelled("not json", "broken")).name.startswith("broken (missing")


def test_policy_names() -> None:
    for good in ("redis-reset", "a", "A.b@c+d=e,f_g-h", "x" * 128):
        assert check_policy_name(good) == good
    for bad in ("", "x" * 129, "has space", "slash/name", "naïve"):
        with pytest.raises(InvalidParameterValue):
            check_policy_name(bad)


def test_canonical_form() -> None:
    policy = Policy.parse(RAM)
    assert policy.to_document() == {
        "version": "2.0",
        "statement": [
            {
                "effect": "allow",
                "action": ["kvstore:ResetAccountPassword"],
                "resource": ["acs:kvstore:*:1234567890:instance/r-bp1*"],
            }
        ],
    }


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "statement",
                    "Statement",
                    "effect",
                    "Effect",
                    "action",
                    "Action",
                    "resource",
                    "Resource",
                    "version",
                    "sid",
                    "name",
                    "x",
                ]
            )
            | st.text(max_size=6),
            inner,
            max_size=5,
        )
    ),
    max_leaves=25,
)
_PATTERN = st.text(alphabet="*?.:/[]()\\^$+{}|crs-aqu", max_size=20)


@settings(max_examples=300, deadline=None)
@given(document=_JSON, action=st.text(max_size=30), resource=st.text(max_size=60))
def test_any_document_parses_or_is_refused_cleanly(
    document: Any, action: str, resource: str
) -> None:
    """Junk documents raise ``InvalidParameterValue`` and nothing else; whatever parses can be
    decided on any action and resource."""
    for form in (document, json.dumps(document)):
        try:
            policy = Policy.parse(form)
        except InvalidParameterValue:
            continue
        decide([policy], action, resource)


@settings(max_examples=300, deadline=None)
@given(action=_PATTERN, resource=_PATTERN, value=st.text(max_size=30))
def test_any_pattern_is_literal_but_for_wildcards(action: str, resource: str, value: str) -> None:
    try:
        policy = Policy.parse(statement(action="s:" + action, resource="q:" + resource))
    except InvalidParameterValue:
        return
    decision = decide([policy], "s:" + value, "q:" + value)
    if "*" not in action + resource and "?" not in action + resource:
        assert decision.allowed is (action.lower() == value.lower() and resource == value)
