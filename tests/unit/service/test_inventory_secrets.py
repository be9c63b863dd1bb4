"""Unit tests of inventory ``[[secrets]]``: the issue's shape parses, durations and begin times
are read, and every mistake is refused naming its field."""

from __future__ import annotations

from datetime import time, timedelta

import pytest

from keyturn.core.errors import InvalidParameterValue
from keyturn.core.secret_manager import DropOld, SecretSubType, SecretVendor
from keyturn.service.inventory import InventoryError, parse_inventory
from keyturn.service.inventory_secrets import parse_duration

HEAD = """
[[tenants]]
id = "1300000001"
name = "demo"

[[tenants]]
id = "1300000002"
name = "other"

[[instances]]
id = "crs-5a4py64p"
tenant = "1300000001"
product = "tencent-redis"
region = "ap-guangzhou"
nodes = ["redis://default:pw@127.0.0.1:6379"]

[[instances]]
id = "r-bp1zxszhcgatnx"
tenant = "1300000001"
product = "alibaba-kvstore"
region = "cn-hangzhou"
nodes = ["redis://default:pw@127.0.0.1:6380"]
"""

SHAPE = """
[[secrets]]
tenant = "1300000001"
name = "orders-redis"      # the SecretName the SDKs use
vendor = "tencent-ssm"     # or "alibaba-kms"
instance = "crs-5a4py64p"
account = "app"            # the account the secret holds (created when missing)
rotation = "30d"           # period; optional begin = "02:00", window = "2h"
begin = "02:00"
window = "2h"
overlap = "10m"            # optional: the old password keeps working this long
"""


def test_the_issue_shape_parses() -> None:
    [secret] = parse_inventory(HEAD + SHAPE, {}).secrets
    assert (secret.tenant_id, secret.name, secret.vendor) == (
        "1300000001",
        "orders-redis",
        SecretVendor.TENCENT_SSM,
    )
    assert (secret.instance_id, secret.account) == ("crs-5a4py64p", "app")
    assert secret.rotation == timedelta(days=30)
    assert (secret.begin, secret.window) == (time(2, 0), timedelta(hours=2))
    assert secret.overlap == timedelta(minutes=10)
    assert (secret.sub_type, secret.source) == (SecretSubType.SINGLE_USER, "inventory")


def test_when_the_old_password_goes() -> None:
    [default] = parse_inventory(HEAD + SHAPE, {}).secrets
    assert (default.drop_old, default.end_old_sessions) == (DropOld.AT_GRACE_END, False)
    text = HEAD + SHAPE + 'drop_old = "when-unused"\nend_old_sessions = true\n'
    [secret] = parse_inventory(text, {}).secrets
    assert (secret.drop_old, secret.end_old_sessions) == (DropOld.WHEN_UNUSED, True)


def test_a_minimal_secret_and_an_instance_added_elsewhere() -> None:
    text = (
        HEAD
        + """
[[secrets]]
tenant = "1300000001"
name = "kv"
vendor = "alibaba-kms"
instance = "r-bp1zxszhcgatnx"
account = "app"

[[secrets]]
tenant = "1300000001"
name = "cli-added"
vendor = "tencent-ssm"
instance = "crs-addedbycli"
account = "app"
rotation = "1d12h"
sub_type = "DoubleUsers"
"""
    )
    kv, cli = parse_inventory(text, {}).secrets
    assert (kv.rotation, kv.overlap, kv.begin) == (None, None, None)
    assert cli.rotation == timedelta(days=1, hours=12)
    assert cli.sub_type is SecretSubType.DOUBLE_USERS


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('vendor = "tencent-ssm"', 'vendor = "aws"'), "secrets[0].vendor"),
        (('rotation = "30d"', 'rotation = "30 days"'), "secrets[0].rotation"),
        (('rotation = "30d"', 'rotation = "0s"'), "rotation period"),
        (('rotation = "30d"', "rotation = 30"), "secrets[0].rotation: must be a string"),
        (('begin = "02:00"', 'begin = "25:00"'), "secrets[0].begin"),
        (('window = "2h"', 'window = "31d"'), "window must not exceed"),
        (('overlap = "10m"', 'overlap = "31d"'), "overlap"),
        (('name = "orders-redis"', 'name = "bad name"'), "secret name"),
        (('account = "app"', 'acount = "app"'), "unknown field(s): acount"),
        (('instance = "crs-5a4py64p"', 'instance = "r-bp1zxszhcgatnx"'), "does not serve"),
        (('tenant = "1300000001"\nname', 'tenant = "1300000002"\nname'), "another tenant"),
        (('overlap = "10m"', 'overlap = "10m"\ndrop_old = "never"'), "secrets[0].drop_old"),
        (('overlap = "10m"', 'overlap = "10m"\nend_old_sessions = 1'), "end_old_sessions"),
        (('overlap = "10m"', 'drop_old = "when-unused"'), "need an overlap"),
    ],
)
def test_mistakes_name_their_field(change: tuple[str, str], message: str) -> None:
    text = HEAD + SHAPE.replace(*change)
    with pytest.raises(InventoryError) as caught:
        parse_inventory(text, {})
    assert message in caught.value.message
    assert caught.value.message.startswith("secrets[0]")


def test_a_secret_declared_twice_and_begin_without_period_are_refused() -> None:
    with pytest.raises(InventoryError, match="declared twice"):
        parse_inventory(HEAD + SHAPE + SHAPE, {})
    no_period = SHAPE.replace('rotation = "30d"', "").replace('overlap = "10m"', "")
    with pytest.raises(InventoryError, match="need a rotation period"):
        parse_inventory(HEAD + no_period, {})


def test_durations() -> None:
    assert parse_duration("45s", "x") == timedelta(seconds=45)
    assert parse_duration("2h30m", "x") == timedelta(hours=2, minutes=30)
    for bad in ("", "10", "h", "1.5h", "-1d", "1w"):
        with pytest.raises(InvalidParameterValue):
            parse_duration(bad, "x")
