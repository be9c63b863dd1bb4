"""Contract tests of the store's policy part: named policies per tenant, what each access key
attaches (an inline document and named references) and their resolution into
``AccessKey.policies``, on a real migrated database (SQLite; other backends plug into
``BACKENDS``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from keyturn.core.access import KeyPolicies, NamedPolicy, Policy, decide, validated_document
from keyturn.core.errors import Conflict, InvalidParameterValue, NotFound
from keyturn.core.model import AccessKey, KeySource, Tenant
from keyturn.core.secrets import Secret
from keyturn.service.admin import ADMINISTRATOR, Admin
from keyturn.service.inventory import parse_inventory
from keyturn.store.opening import open_store
from keyturn.store.schema import access_keys, policies
from keyturn.store.sealing import AesGcmSecretBox
from keyturn.store.sql import SqlStore
from tests.support.fakes import FakeClock
from tests.support.store_backends import StoreBackend

T1 = Tenant(id="1300000001", name="one")
T2 = Tenant(id="1300000002", name="two")
CRS = "qcs::redis:ap-guangzhou:uin/1300000001:instance/crs-allowed01"
OTHER_CRS = "qcs::redis:ap-guangzhou:uin/1300000001:instance/crs-other001"

RESET = validated_document(
    {
        "version": "2.0",
        "statement": [
            {
                "effect": "allow",
                "action": "redis:ResetPassword",
                "resource": "qcs::redis:*:uin/1300000001:instance/crs-allowed*",
            }
        ],
    }
)
DESCRIBE = validated_document(
    {"Statement": [{"Effect": "Allow", "Action": "redis:Describe*", "Resource": "*"}]}
)
DENY_RESETS = validated_document(
    {"statement": [{"effect": "deny", "action": "redis:ResetPassword", "resource": "*"}]}
)

START = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
async def store(store_backend: StoreBackend) -> AsyncIterator[SqlStore]:
    opened = await open_store(
        store_backend.url, AesGcmSecretBox(b"k" * 32), FakeClock(START, tick=1)
    )
    await opened.put_tenant(T1, KeySource.CLI)
    await opened.put_tenant(T2, KeySource.CLI)
    for key_id, tenant in (("AKIDone", T1), ("AKIDtwo", T1), ("AKIDelse", T2)):
        await opened.put_access_key(
            AccessKey(id=key_id, tenant_id=tenant.id, secret=Secret("s" * 20))
        )
    try:
        yield opened
    finally:
        await opened.close()


def named(name: str, document: str, tenant: Tenant = T1, **kw: Any) -> NamedPolicy:
    return NamedPolicy(tenant_id=tenant.id, name=name, document=document, **kw)


async def decision(store: SqlStore, key_id: str, action: str, resource: str) -> tuple[bool, str]:
    key = await store.get_access_key(key_id)
    assert key is not None and key.policies is not None
    found = decide([Policy.parse(doc) for doc in key.policies], action, resource)
    return found.allowed, found.reason


async def test_named_policies_per_tenant(store: SqlStore) -> None:
    await store.put_policy(named("reset", RESET))
    await store.put_policy(named("describe", DESCRIBE, source=KeySource.INVENTORY))
    await store.put_policy(named("reset", DENY_RESETS, T2))
    got = await store.get_policy(T1.id, "reset")
    assert (got.document, got.source, got.created_at is not None) == (RESET, KeySource.CLI, True)
    assert [(p.tenant_id, p.name) for p in await store.list_policies()] == [
        (T1.id, "describe"),
        (T1.id, "reset"),
        (T2.id, "reset"),
    ]
    assert [p.name for p in await store.list_policies(T1.id)] == ["describe", "reset"]
    assert [p.name for p in await store.list_policies(source=KeySource.INVENTORY)] == ["describe"]
    # Replacing keeps the creation time and takes the new document and source.
    await store.put_policy(named("reset", DESCRIBE, source=KeySource.INVENTORY))
    again = await store.get_policy(T1.id, "reset")
    assert (again.document, again.source, again.created_at) == (
        DESCRIBE,
        KeySource.INVENTORY,
        got.created_at,
    )
    with pytest.raises(NotFound):
        await store.get_policy(T2.id, "describe")
    with pytest.raises(NotFound):
        await store.put_policy(named("x", RESET, Tenant(id="9", name="")))


async def test_a_key_without_policies_is_an_administrator(store: SqlStore) -> None:
    key = await store.get_access_key("AKIDone")
    assert key is not None and key.policies is None
    assert await store.key_policies("AKIDone") is None
    with pytest.raises(NotFound):
        await store.key_policies("AKIDnobody")
    with pytest.raises(NotFound):
        await store.set_key_policies("AKIDnobody", KeyPolicies())


async def test_attachments_resolve_in_order_with_names(store: SqlStore) -> None:
    await store.put_policy(named("reset", RESET))
    await store.put_policy(named("describe", DESCRIBE))
    attached = KeyPolicies(inline=DENY_RESETS, names=("reset", "describe"))
    await store.set_key_policies("AKIDone", attached)
    assert await store.key_policies("AKIDone") == attached
    key = await store.get_access_key("AKIDone")
    assert key is not None and key.policies is not None
    assert [Policy.parse(doc).name for doc in key.policies] == ["", "reset", "describe"]
    assert await decision(store, "AKIDone", "redis:ResetPassword", CRS) == (
        False,
        "explicitly denied by statement 0 of policy (inline)",
    )
    assert await decision(store, "AKIDone", "redis:DescribeInstances", CRS) == (
        True,
        "allowed by statement 0 of policy describe",
    )
    # The column holds a JSON list of inline and named entries.
    async with store.engine.connect() as conn:
        raw = await conn.scalar(
            sa.select(access_keys.c.policies).where(access_keys.c.id == "AKIDone")
        )
    assert json.loads(str(raw)) == [
        {"document": json.loads(DENY_RESETS)},
        {"policy": "reset"},
        {"policy": "describe"},
    ]
    # list_access_keys resolves the same way; other keys stay administrators.
    listed = {k.id: k.policies for k in await store.list_access_keys()}
    assert listed["AKIDone"] == key.policies
    assert listed["AKIDtwo"] is None and listed["AKIDelse"] is None


async def test_a_changed_named_policy_applies_to_its_keys(store: SqlStore) -> None:
    await store.put_policy(named("p", RESET))
    await store.set_key_policies("AKIDone", KeyPolicies(names=("p",)))
    await store.set_key_policies("AKIDtwo", KeyPolicies(names=("p",)))
    assert (await decision(store, "AKIDone", "redis:ResetPassword", CRS))[0]
    await store.put_policy(named("p", DENY_RESETS))
    for key_id in ("AKIDone", "AKIDtwo"):
        assert not (await decision(store, key_id, "redis:ResetPassword", CRS))[0]


async def test_only_the_keys_own_tenants_policies_attach(store: SqlStore) -> None:
    await store.put_policy(named("theirs", DESCRIBE, T2))
    await store.set_key_policies("AKIDone", KeyPolicies(names=()))
    with pytest.raises(NotFound, match="no policy named 'theirs'"):
        await store.set_key_policies("AKIDone", KeyPolicies(names=("theirs",)))
    # Nothing changed.
    assert await store.key_policies("AKIDone") == KeyPolicies()
    # A policy of the same name in the key's tenant is a different policy.
    await store.put_policy(named("theirs", RESET, T1))
    await store.set_key_policies("AKIDone", KeyPolicies(names=("theirs",)))
    assert not (await decision(store, "AKIDone", "redis:DescribeInstances", CRS))[0]


async def test_empty_attachments_grant_nothing_and_none_restores_the_administrator(
    store: SqlStore,
) -> None:
    await store.set_key_policies("AKIDone", KeyPolicies())
    key = await store.get_access_key("AKIDone")
    assert key is not None and key.policies == ()
    assert decide([], "redis:DescribeInstances", CRS).allowed is False
    await store.set_key_policies("AKIDone", None)
    key = await store.get_access_key("AKIDone")
    assert key is not None and key.policies is None


async def test_removal_is_refused_while_attached(store: SqlStore) -> None:
    await store.put_policy(named("p", RESET))
    await store.put_policy(named("p", RESET, T2))
    await store.set_key_policies("AKIDone", KeyPolicies(names=("p",)))
    await store.set_key_policies("AKIDtwo", KeyPolicies(inline=RESET, names=("p",)))
    with pytest.raises(Conflict, match="AKIDone, AKIDtwo"):
        await store.remove_policy(T1.id, "p")
    # T2's policy of the same name is attached to nobody.
    assert await store.remove_policy(T2.id, "p") is True
    await store.set_key_policies("AKIDone", None)
    await store.set_key_policies("AKIDtwo", KeyPolicies(inline=RESET))
    assert await store.remove_policy(T1.id, "p") is True
    assert await store.remove_policy(T1.id, "p") is False


async def test_a_removal_racing_an_attachment_never_leaves_a_dangling_one(
    store: SqlStore,
) -> None:
    """Concurrent ``remove_policy`` and ``set_key_policies``: one of them loses (Conflict or
    NotFound), never both win (PostgreSQL runs them at once under READ COMMITTED)."""
    for round_ in range(15):
        await store.set_key_policies("AKIDone", None)
        await store.put_policy(named("p", RESET))
        removed, attached = await asyncio.gather(
            store.remove_policy(T1.id, "p"),
            store.set_key_policies("AKIDone", KeyPolicies(names=("p",))),
            return_exceptions=True,
        )
        exists = [p.name for p in await store.list_policies(T1.id)] == ["p"]
        keeps = await store.key_policies("AKIDone") == KeyPolicies(names=("p",))
        assert exists or not keeps, (round_, removed, attached)
        assert isinstance(removed, bool | Conflict), removed
        assert attached is None or isinstance(attached, NotFound), attached
        if not exists:
            assert removed is True and isinstance(attached, NotFound)


async def test_a_vanished_reference_denies_everything(store: SqlStore) -> None:
    await store.put_policy(
        named(
            "allow-all",
            validated_document(
                {"statement": [{"effect": "allow", "action": "*", "resource": "*"}]}
            ),
        )
    )
    await store.put_policy(named("gone", DESCRIBE))
    await store.set_key_policies("AKIDone", KeyPolicies(names=("allow-all", "gone")))
    # Only a direct edit can remove an attached policy; the key then fails closed.
    async with store.engine.begin() as conn:
        await conn.execute(sa.delete(policies).where(policies.c.name == "gone"))
    allowed, reason = await decision(store, "AKIDone", "redis:DescribeInstances", CRS)
    assert not allowed and "gone (missing: denies everything)" in reason


async def test_key_updates_keep_attachments_and_tenant_removal_drops_policies(
    store: SqlStore,
) -> None:
    await store.put_policy(named("p", RESET, T2))
    await store.set_key_policies("AKIDelse", KeyPolicies(names=("p",)))
    # An inventory reload re-puts keys: their attachments stay.
    await store.put_access_key(
        AccessKey(id="AKIDelse", tenant_id=T2.id, secret=Secret("t" * 20), enabled=False)
    )
    assert await store.key_policies("AKIDelse") == KeyPolicies(names=("p",))
    await store.remove_access_key("AKIDelse")
    await store.remove_tenant(T2.id)
    assert await store.list_policies(T2.id) == []


async def test_attachments_survive_a_reopen(store_backend: StoreBackend) -> None:
    url = store_backend.url
    box = AesGcmSecretBox(b"k" * 32)
    first = await open_store(url, box, FakeClock(START, tick=1))
    await first.put_tenant(T1, KeySource.CLI)
    await first.put_access_key(AccessKey(id="AKIDone", tenant_id=T1.id, secret=Secret("s" * 20)))
    await first.put_policy(named("reset", RESET))
    await first.set_key_policies("AKIDone", KeyPolicies(inline=DESCRIBE, names=("reset",)))
    await first.close()
    second = await open_store(url, box, FakeClock(START, tick=1))
    try:
        assert await second.key_policies("AKIDone") == KeyPolicies(
            inline=DESCRIBE, names=("reset",)
        )
        assert (await decision(second, "AKIDone", "redis:ResetPassword", CRS))[0]
        assert not (await decision(second, "AKIDone", "redis:ResetPassword", OTHER_CRS))[0]
    finally:
        await second.close()


# --------------------------------------------------------------------------- Admin over the store

INVENTORY = """
[[tenants]]
id = "1300000001"

[[policies]]
tenant = "1300000001"
name = "reset"
document = '''{"version": "2.0", "statement": [{"effect": "allow", "action": "redis:ResetPassword",
  "resource": "qcs::redis:*:uin/1300000001:instance/crs-allowed*"}]}'''

[[policies]]
tenant = "1300000001"
name = "describe"
document = '{"Statement": [{"Effect": "Allow", "Action": "redis:Describe*", "Resource": "*"}]}'

[[keys]]
tenant = "1300000001"
id = "AKIDinv"
secret = "a-long-random-secret"
policies = ["reset"]
policy = { statement = [{ effect = "allow", action = "redis:DescribeTaskInfo", resource = "*" }] }

[[keys]]
tenant = "1300000001"
id = "AKIDinvadmin"
secret = "a-long-random-secret"
"""


async def test_reconcile_declares_policies_and_attachments(store: SqlStore) -> None:
    admin = Admin(store)
    report = await admin.reconcile(parse_inventory(INVENTORY, {}))
    assert report.policies == 2
    attached = await store.key_policies("AKIDinv")
    assert attached is not None and attached.names == ("reset",) and attached.inline
    assert await store.key_policies("AKIDinvadmin") is None
    assert (await decision(store, "AKIDinv", "redis:ResetPassword", CRS))[0]
    assert (await decision(store, "AKIDinv", "redis:DescribeTaskInfo", CRS))[0]
    assert not (await decision(store, "AKIDinv", "redis:DescribeInstances", CRS))[0]
    key = await store.get_access_key("AKIDinv")
    assert key is not None and key.enabled
    # The next version of the file: the key moves to "describe", "reset" goes away, the
    # administrator key gets an (empty) list and the CLI's policies are left alone.
    await store.put_policy(named("cli-made", DESCRIBE))
    changed = (
        INVENTORY.replace('policies = ["reset"]', 'policies = ["describe"]')
        .replace("[[policies]]\ntenant", "[[unused]]\ntenant", 1)
        .replace('id = "AKIDinvadmin"', 'id = "AKIDinvadmin"\npolicies = []')
    )
    report = await admin.reconcile(parse_inventory(changed, {}))
    assert report.removed == 1
    assert [p.name for p in await store.list_policies(T1.id)] == ["cli-made", "describe"]
    assert (await store.key_policies("AKIDinv")).names == ("describe",)  # type: ignore[union-attr]
    assert await store.key_policies("AKIDinvadmin") == KeyPolicies()
    # A CLI key attaching an inventory policy keeps the file from removing it.
    await admin.attach_policy("AKIDone", "describe")
    without = changed.replace("[[policies]]\ntenant", "[[unused]]\ntenant", 1).replace(
        'policies = ["describe"]', ""
    )
    with pytest.raises(Conflict, match="AKIDone"):
        await admin.reconcile(parse_inventory(without, {}))


async def test_reconcile_names_the_key_of_an_unknown_policy(store: SqlStore) -> None:
    text = INVENTORY.replace('policies = ["reset"]', 'policies = ["nope"]')
    with pytest.raises(NotFound, match="key AKIDinv: tenant '1300000001' has no policy named"):
        await Admin(store).reconcile(parse_inventory(text, {}))


async def test_admin_policy_commands(store: SqlStore) -> None:
    admin = Admin(store)
    await admin.put_policy(T1.id, "reset", RESET)
    with pytest.raises(InvalidParameterValue, match="effect must be"):
        await admin.put_policy(T1.id, "bad", '{"statement": [{"effect": "maybe"}]}')
    with pytest.raises(InvalidParameterValue, match="policy name"):
        await admin.put_policy(T1.id, "bad name", RESET)
    with pytest.raises(NotFound):
        await admin.put_policy("9", "reset", RESET)
    # A key created with policies is restricted from its first request.
    key = await admin.create_key(T1.id, policies=KeyPolicies(names=("reset",)))
    assert key.enabled
    stored = await store.get_access_key(key.id)
    assert stored is not None and stored.enabled and stored.policies is not None
    before = len(await store.list_access_keys())
    with pytest.raises(NotFound):
        await admin.create_key(T1.id, policies=KeyPolicies(names=("nope",)))
    assert len(await store.list_access_keys()) == before
    # explain: administrator, allowed, denied, disabled.
    assert (await admin.explain("AKIDone", "redis:ResetPassword", CRS)).reason == ADMINISTRATOR
    assert (await admin.explain(key.id, "redis:ResetPassword", CRS)).allowed
    assert not (await admin.explain(key.id, "redis:ResetPassword", OTHER_CRS)).allowed
    with pytest.raises(NotFound):
        await admin.explain("AKIDnobody", "redis:ResetPassword", CRS)
    # attach turns an administrator into a restricted key; detach leaves nothing, not admin.
    assert await admin.attach_policy("AKIDone", "reset") == KeyPolicies(names=("reset",))
    assert await admin.attach_policy("AKIDone", "reset") == KeyPolicies(names=("reset",))
    with pytest.raises(NotFound):
        await admin.attach_policy("AKIDone", "nope")
    with pytest.raises(NotFound):
        await admin.attach_policy("AKIDelse", "reset")  # T2 has no policy "reset"
    await admin.set_inline_policy("AKIDone", DESCRIBE)
    assert (await admin.explain("AKIDone", "redis:DescribeInstances", CRS)).allowed
    assert await admin.detach_policy("AKIDone", "reset") == KeyPolicies(inline=DESCRIBE)
    with pytest.raises(NotFound):
        await admin.detach_policy("AKIDone", "reset")
    with pytest.raises(Conflict):
        await admin.remove_policy(T1.id, "reset")  # still attached to the created key
    await admin.clear_policies("AKIDone")
    assert (await admin.explain("AKIDone", "redis:ResetPassword", OTHER_CRS)).allowed
    await admin.revoke_key(key.id)
    disabled = await admin.explain(key.id, "redis:ResetPassword", CRS)
    assert not disabled.allowed and "disabled" in disabled.reason
    with pytest.raises(NotFound):
        await admin.remove_policy(T1.id, "nope")
