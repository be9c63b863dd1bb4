"""Inventory ``[[policies]]`` and key ``policy``/``policies``: both document forms (a TOML table
mirroring the JSON, JSON text), attachments, and errors that name the field."""

from __future__ import annotations

import json

import pytest

from keyturn.core.access import KeyPolicies, Policy, decide
from keyturn.service.inventory import InventoryError, parse_inventory

HEAD = """
[[tenants]]
id = "1300000001"

[[tenants]]
id = "1300000002"
"""

AS_TABLE = """
[[policies]]
tenant = "1300000001"
name = "redis-reset"

[policies.document]
version = "2.0"

[[policies.document.statement]]
effect = "allow"
action = ["redis:ResetPassword"]
resource = ["qcs::redis:*:uin/1300000001:instance/crs-*"]
"""

AS_JSON = """
[[policies]]
tenant = "1300000001"
name = "redis-reset"
document = '''
{"version": "2.0", "statement": [{"effect": "allow", "action": ["redis:ResetPassword"],
 "resource": ["qcs::redis:*:uin/1300000001:instance/crs-*"]}]}
'''
"""

AS_OWN_TABLE = """
[[policies]]
tenant = "1300000001"
name = "redis-reset"
Version = "2.0"

[[policies.Statement]]
Effect = "Allow"
Action = "redis:ResetPassword"
Resource = "qcs::redis:*:uin/1300000001:instance/crs-*"
"""

KEYS = """
[[keys]]
tenant = "1300000001"
id = "AKIDadmin"
secret = "a-long-random-secret"

[[keys]]
tenant = "1300000001"
id = "AKIDrestricted"
secret = "a-long-random-secret"
policies = ["redis-reset"]
policy = { statement = [{ effect = "deny", action = "*", resource = "qcs:*:crs-prod*" }] }

[[keys]]
tenant = "1300000001"
id = "AKIDjsoninline"
secret = "a-long-random-secret"
policy = '{"Statement": {"Effect": "Allow", "Action": "redis:Describe*", "Resource": "*"}}'

[[keys]]
tenant = "1300000001"
id = "AKIDnothing"
secret = "a-long-random-secret"
policies = []
"""

CRS = "qcs::redis:ap-guangzhou:uin/1300000001:instance/crs-5a4py64p"


@pytest.mark.parametrize("form", [AS_TABLE, AS_JSON, AS_OWN_TABLE])
def test_a_named_policy_in_each_form(form: str) -> None:
    inventory = parse_inventory(HEAD + form, {})
    (policy,) = inventory.policies
    assert (policy.tenant, policy.name) == ("1300000001", "redis-reset")
    parsed = Policy.parse(policy.document, name=policy.name)
    assert decide([parsed], "redis:ResetPassword", CRS).allowed
    assert not decide([parsed], "redis:DescribeInstances", CRS).allowed
    # Stored compact, in the author's shape.
    assert "\n" not in policy.document and json.loads(policy.document)


def test_key_attachments() -> None:
    inventory = parse_inventory(HEAD + AS_TABLE + KEYS, {})
    keys = {key.id: key for key in inventory.keys}
    assert keys["AKIDadmin"].policies is None
    restricted = keys["AKIDrestricted"].policies
    assert restricted is not None and restricted.names == ("redis-reset",)
    assert restricted.inline is not None and '"deny"' in restricted.inline
    inline = keys["AKIDjsoninline"].policies
    assert inline == KeyPolicies(inline=inline.inline if inline else None, names=())
    assert inline is not None and inline.inline is not None
    assert decide([Policy.parse(inline.inline)], "redis:DescribeTaskInfo", CRS).allowed
    # An explicitly empty list attaches nothing: the key may do nothing (not an administrator).
    assert keys["AKIDnothing"].policies == KeyPolicies()


def test_policy_documents_are_taken_literally() -> None:
    text = AS_TABLE.replace("crs-*", "${PREFIX}*")
    (policy,) = parse_inventory(HEAD + text, {}).policies
    assert "${PREFIX}*" in policy.document


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            AS_TABLE.replace('effect = "allow"', 'effect = "permit"'),
            "policies[0].document: policy redis-reset statement 0: effect must be allow or deny",
        ),
        (
            AS_JSON.replace('"version": "2.0", ', "").replace('"statement"', '"statements"'),
            "policies[0].document: policy redis-reset has no statement list",
        ),
        (
            AS_JSON.replace('{"version"', '{{"version"'),
            "policies[0].document: policy redis-reset is not JSON",
        ),
        (AS_TABLE.replace('"redis-reset"', '"bad name"'), "policies[0].name: a policy name is"),
        (AS_TABLE.replace('tenant = "1300000001"', 'tenant = "9"'), "tenant '9' is not declared"),
        (AS_TABLE + AS_JSON, "policies: '1300000001/redis-reset' is declared twice"),
        (
            AS_JSON.replace("document = '''", "document = 3\nx = '''"),
            "policies[0].document: must be",
        ),
        (
            AS_OWN_TABLE.replace('Effect = "Allow"', 'Effect = "Allow"\nCondition = { a = 1 }'),
            "policies[0]: policy redis-reset statement 0: the element condition is not supported",
        ),
        (
            KEYS.replace('policies = ["redis-reset"]', 'policies = "redis-reset"'),
            "keys[1].policies: must be a list of policy names",
        ),
        (
            KEYS.replace('policies = ["redis-reset"]', 'policies = ["a", "a"]'),
            "keys[1].policies: 'a' is declared twice",
        ),
        (
            KEYS.replace('policies = ["redis-reset"]', 'policies = ["no spaces"]'),
            "keys[1].policies[0]: a policy name is",
        ),
        (
            KEYS.replace('effect = "deny", action = "*"', 'effect = "deny", action = "crs"'),
            "keys[1].policy: policy (inline) statement 0: each action must be",
        ),
        (KEYS.replace("policy = '{", "policy = '[{").replace("}}'", "}}]'"), "keys[2].policy"),
    ],
)
def test_errors_name_the_field(text: str, message: str) -> None:
    with pytest.raises(InventoryError) as caught:
        parse_inventory(HEAD + text, {})
    assert message in caught.value.message
