"""Which accounts the vendor APIs may not change (``keyturn.service.protection``): keyturn's own
logins on nodes and sentinels, superusers as probes report them, the Redis ``default`` user's
exemption from superuser-ness, MySQL rows counted by their user, and the instance's opt-in."""

from __future__ import annotations

from dataclasses import replace

import pytest

from keyturn.core.engine_ports import EngineInfo
from keyturn.core.errors import ProtectedAccount
from keyturn.core.model import (
    EngineKind,
    Node,
    NodeRole,
    Product,
    login_name,
    parse_node_url,
)
from keyturn.service import protection
from tests.support.fakes import fake_instance

SUPER = EngineInfo(version="7.0.15", accounts=True, superuser=True)
PLAIN = EngineInfo(version="7.0.15", accounts=True, superuser=False)
UNKNOWN = EngineInfo(version="7.0.15", accounts=True)


def test_keyturns_own_login_is_protected_by_name() -> None:
    instance = fake_instance(admin="kt_admin")
    with pytest.raises(ProtectedAccount) as caught:
        protection.check(instance, "kt_admin")
    assert "allow_admin_reset" in caught.value.message
    protection.check(instance, "app")
    protection.check(instance, "default", [SUPER])  # the instance password, not keyturn's


def test_default_is_protected_when_keyturn_logs_in_with_it() -> None:
    instance = fake_instance(product=Product.TENCENT_REDIS, admin="default")
    with pytest.raises(ProtectedAccount):
        protection.check(instance, "default")
    protection.check(replace(instance, allow_admin_reset=True), "default")


def test_sentinel_logins_are_protected() -> None:
    instance = fake_instance(admin="kt_admin")
    address = parse_node_url("redis://watcher:pw@127.0.0.1:26379/mymaster", EngineKind.REDIS)
    sentinel = Node(instance_id=instance.id, ordinal=1000, address=address, role=NodeRole.SENTINEL)
    with pytest.raises(ProtectedAccount):
        protection.check(replace(instance, sentinels=(sentinel,)), "watcher")


def test_superusers_are_protected_when_a_probe_says_so() -> None:
    instance = fake_instance()
    with pytest.raises(ProtectedAccount) as caught:
        protection.check(instance, "ops", [PLAIN, SUPER])
    assert "superuser" in caught.value.message
    protection.check(instance, "app", [PLAIN, UNKNOWN])
    assert protection.superuser_matters(instance, "ops")
    assert not protection.superuser_matters(instance, "default")
    opted_in = replace(instance, allow_admin_reset=True)
    protection.check(opted_in, "ops", [SUPER])
    protection.check(opted_in, "kt_admin", [SUPER])
    assert not protection.superuser_matters(opted_in, "ops")


def test_postgres_superuser_named_default_is_still_protected() -> None:
    """Only Redis has an instance-password account; elsewhere every superuser counts."""
    instance = fake_instance(
        "postgres-fake0001",
        product=Product.TENCENT_POSTGRES,
        admin="postgres",
        engine=EngineKind.POSTGRES,
    )
    with pytest.raises(ProtectedAccount):
        protection.check(instance, "default", [SUPER])
    with pytest.raises(ProtectedAccount):
        protection.check(instance, "postgres")


def test_mysql_rows_count_by_their_user() -> None:
    assert login_name(EngineKind.MYSQL, "root@127.0.0.1") == "root"
    assert login_name(EngineKind.MYSQL, "mail@example.com@%") == "mail@example.com"
    assert login_name(EngineKind.MYSQL, "root") == "root"
    assert login_name(EngineKind.REDIS, "a@b") == "a@b"
    instance = fake_instance(
        "tdsql3-fake0001", product=Product.TENCENT_TDMYSQL, admin="kadmin", engine=EngineKind.MYSQL
    )
    for row in ("kadmin@%", "kadmin@localhost", "kadmin@127.0.0.1"):
        with pytest.raises(ProtectedAccount):
            protection.check(instance, row)
    protection.check(instance, "app@%", [PLAIN])
