"""The ``Engine`` contract every adapter keeps, checked on real throwaway servers of each kind.

One suite, parametrized over Redis, PostgreSQL and MariaDB (``engine_case``, from
``tests.support.engine_cases``: a started server, a data account with a known password,
keyturn's admin node and the engine). Every claim is
checked from outside the engine too, with a fresh login of its own (``tests.support.logins``):
a new password logs in and the old one is refused, a snapshot brings the old one back, a name
that does not exist (an injection-shaped one included) is never created, a node that is down
or refuses keyturn's login is unavailable without naming a password, keyturn can reset the
account it logs in with (the pending credential), and the plan an engine builds for the
instance changes and undoes the password. What only one engine does (ACL rules, NOLOGIN and
VALID UNTIL, host rows and shadowing...) is in that engine's own module.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from keyturn.core.errors import (
    AccountNotFound,
    EngineUnavailable,
    UnsupportedFeature,
    VerificationFailed,
)
from keyturn.core.model import NodeRole
from keyturn.core.secrets import Secret
from keyturn.engines.registry import EngineRegistry
from tests.support.engine_cases import (
    ADMIN_NEW,
    NEW,
    OLD,
    TIMEOUT,
    EngineCase,
    engine_case,
    sql_case,
)
from tests.support.plans import instance_of, planned

__all__ = ["engine_case", "sql_case"]

pytestmark = pytest.mark.engine

#: Names every engine takes as a plain account name, and a password of the same kind.
ODD_NAMES = ["q\"uo'te", "back\\slash", "ünïcödé-用户", "semi;colon", "pct%_under"]
ODD_PASSWORD = "p w \"q\" 's' ünï >x <y #z %s"


# --------------------------------------------------------------------------- reads


async def test_the_registry_serves_the_engine(engine_case: EngineCase) -> None:
    registry = EngineRegistry(TIMEOUT)
    driver = registry.engine(engine_case.kind)
    assert type(driver) is type(engine_case.engine)
    assert driver.kind is engine_case.kind
    await registry.close()


async def test_probe_tells_the_version_and_superusers(engine_case: EngineCase) -> None:
    engine, admin = engine_case.engine, engine_case.admin
    info = await engine.probe(admin, engine_case.admin_account)
    assert info.version.startswith(engine_case.flavour.version)
    assert info.accounts is True
    assert info.superuser is True
    assert (await engine.probe(admin, engine_case.account)).superuser is False
    assert (await engine.probe(admin, engine_case.flavour.missing[0])).superuser is None
    assert (await engine.probe(admin)).superuser is None


async def test_list_accounts_names_the_data_account(engine_case: EngineCase) -> None:
    accounts = {a.name: a for a in await engine_case.engine.list_accounts(engine_case.admin)}
    assert accounts[engine_case.account].enabled
    assert not accounts[engine_case.account].password_free
    assert engine_case.admin_account in accounts


async def test_sql_engines_have_no_password_free_accounts(sql_case: EngineCase) -> None:
    engine, node, account = sql_case.engine, sql_case.admin, sql_case.account
    assert (await engine.probe(node, account)).password_free is None
    with pytest.raises(UnsupportedFeature):
        await engine.set_password_free(node, account)
    with pytest.raises(UnsupportedFeature):
        await engine.verify(node, account, None)


# --------------------------------------------------------------------------- changes


async def test_set_password_then_verify(engine_case: EngineCase) -> None:
    engine, node, account = engine_case.engine, engine_case.admin, engine_case.account
    result = await engine.set_password(node, account, Secret(NEW))
    assert result.persisted
    await engine.verify(node, account, Secret(NEW))
    assert engine_case.logs_in(account, NEW)
    assert not engine_case.logs_in(account, OLD)

    with pytest.raises(VerificationFailed) as caught:
        await engine.verify(node, account, Secret(OLD))
    assert node.address.endpoint in caught.value.message
    assert OLD not in str(caught.value)
    assert engine_case.server.password not in str(caught.value)


async def test_password_matches_the_current_password_only(engine_case: EngineCase) -> None:
    engine, node, account = engine_case.engine, engine_case.admin, engine_case.account
    assert await engine.password_matches(node, account, Secret(OLD))
    assert not await engine.password_matches(node, account, Secret(NEW))
    await engine.set_password(node, account, Secret(NEW))
    assert await engine.password_matches(node, account, Secret(NEW))
    assert not await engine.password_matches(node, account, Secret(OLD))


async def test_restore_brings_back_the_old_password(engine_case: EngineCase) -> None:
    engine, node, account = engine_case.engine, engine_case.admin, engine_case.account
    snapshot = await engine.snapshot(node, account)
    assert snapshot.account == account
    await engine.set_password(node, account, Secret(NEW))
    assert (await engine.restore(node, snapshot)).persisted
    await engine.restore(node, snapshot)  # idempotent
    assert await engine.snapshot(node, account) == snapshot
    assert engine_case.logs_in(account, OLD)
    assert not engine_case.logs_in(account, NEW)


async def test_a_snapshot_after_a_probe_is_the_one_the_node_gives(
    engine_case: EngineCase,
) -> None:
    """A reset's probe may read what the task's snapshot needs in its round trip (Redis,
    PostgreSQL): that snapshot equals one read from the node, serves one snapshot only, and
    a change after it is seen by the next one."""
    engine, node, account = engine_case.engine, engine_case.admin, engine_case.account
    await engine.probe(node, account)
    probed = await engine.snapshot(node, account)
    assert probed == await engine.snapshot(node, account)
    await engine.probe(node, account)
    assert await engine.snapshot(node, account) == probed  # what the probe read
    await engine.set_password(node, account, Secret(NEW))
    changed = await engine.snapshot(node, account)
    assert changed != probed
    assert (await engine.restore(node, probed)).persisted
    assert engine_case.logs_in(account, OLD)


async def test_missing_accounts_are_never_created(engine_case: EngineCase) -> None:
    engine, node = engine_case.engine, engine_case.admin
    before = {a.name for a in await engine.list_accounts(node)}
    template = await engine.snapshot(node, engine_case.account)
    for name in engine_case.flavour.missing:
        with pytest.raises(AccountNotFound):
            await engine.snapshot(node, name)
        with pytest.raises(AccountNotFound):
            await engine.set_password(node, name, Secret(NEW))
        with pytest.raises(AccountNotFound):
            await engine.restore(node, replace(template, account=name))
    assert {a.name for a in await engine.list_accounts(node)} == before
    assert engine_case.logs_in(engine_case.account, OLD)


@pytest.mark.parametrize("name", ODD_NAMES)
async def test_odd_names_and_passwords_are_only_values(engine_case: EngineCase, name: str) -> None:
    engine, node = engine_case.engine, engine_case.admin
    account = await engine_case.add_account(name, OLD)
    sibling = await engine_case.add_account(name + "_other", OLD)
    snapshot = await engine.snapshot(node, account)
    await engine.set_password(node, account, Secret(ODD_PASSWORD))
    await engine.verify(node, account, Secret(ODD_PASSWORD))
    assert engine_case.logs_in(account, ODD_PASSWORD)
    assert not engine_case.logs_in(account, OLD)
    assert engine_case.logs_in(sibling, OLD)
    await engine.restore(node, snapshot)
    assert engine_case.logs_in(account, OLD)
    assert account in {a.name for a in await engine.list_accounts(node)}


async def test_sql_logs_never_hold_a_plaintext_password(sql_case: EngineCase) -> None:
    engine, node, account = sql_case.engine, sql_case.admin, sql_case.account
    used = ["Plain-Leak-Check-1", "Plain-Leak-Check-2"]
    snapshot = await engine.snapshot(node, account)
    for password in used:
        await engine.set_password(node, account, Secret(password))
        await engine.verify(node, account, Secret(password))
    with pytest.raises(AccountNotFound):
        await engine.set_password(node, sql_case.flavour.missing[0], Secret("Plain-Leak-Check-3"))
    with pytest.raises(VerificationFailed):
        await engine.verify(node, account, Secret("Plain-Leak-Check-4"))
    await engine.restore(node, snapshot)
    logs = sql_case.flavour.logs(sql_case.server)
    assert logs
    for text in logs:
        assert "ALTER " in text  # the log is on and saw the changes
        for password in [*used, "Plain-Leak-Check-3", "Plain-Leak-Check-4", OLD]:
            assert password not in text
        assert sql_case.server.password not in text


# --------------------------------------------------------------------------- keyturn's own login


async def test_a_node_that_is_down_is_unavailable(engine_case: EngineCase) -> None:
    engine, node, account = engine_case.engine, engine_case.admin, engine_case.account
    await engine.probe(node)  # a pooled session is open when the server goes away
    engine_case.server.stop()
    for call in (
        engine.probe(node),
        engine.set_password(node, account, Secret(NEW)),
        engine.verify(node, account, Secret(OLD)),
    ):
        with pytest.raises(EngineUnavailable) as caught:
            await call
        assert node.address.endpoint in caught.value.message
    engine_case.server.start()
    assert (await engine.probe(node)).accounts  # reconnects after the outage


async def test_a_wrong_admin_password_is_unavailable(engine_case: EngineCase) -> None:
    node = engine_case.node("Not-The-Admin-Pw")
    with pytest.raises(EngineUnavailable, match="admin login") as caught:
        await engine_case.engine.probe(node)
    assert "Not-The-Admin-Pw" not in repr(caught.value)
    assert caught.value.__suppress_context__  # the driver's exception is not chained


async def test_keyturn_resets_its_own_account_with_the_pending_password(
    engine_case: EngineCase,
) -> None:
    engine, admin = engine_case.engine, engine_case.admin_account
    old = engine_case.server.password
    node = replace(engine_case.admin, pending_password=Secret(ADMIN_NEW))
    await engine.probe(node)
    await engine.set_password(node, admin, Secret(ADMIN_NEW))
    await engine.verify(node, admin, Secret(ADMIN_NEW))
    await engine.probe(node)  # the pooled session survives its own reset
    await engine.forget(node)  # the next admin login must fall back to the pending password
    assert (await engine.probe(node)).version.startswith(engine_case.flavour.version)
    assert not engine_case.logs_in(admin, old)
    engine_case.server.password = ADMIN_NEW  # for the fixtures that stop the server

    # Without the pending password the old credential no longer logs in ...
    with pytest.raises(EngineUnavailable, match="admin login"):
        await engine.probe(engine_case.node(old))
    # ... and once promoted, the new one is used directly.
    await engine.snapshot(engine_case.node(ADMIN_NEW), admin)


# --------------------------------------------------------------------------- plans


async def test_the_plan_changes_and_undoes_the_password(engine_case: EngineCase) -> None:
    engine, account = engine_case.engine, engine_case.account
    admin = engine_case.admin
    instance = instance_of([engine_case.server.url()], product=engine_case.flavour.product)
    topology = await engine.discover(instance)
    assert [n.role for n in topology.nodes] == [NodeRole.PRIMARY]
    run = await planned(engine, instance, account, NEW)
    assert {s.endpoint for s in run.plan.steps} == {admin.address.endpoint}
    await run.apply()
    await run.check()
    assert engine_case.logs_in(account, NEW) and not engine_case.logs_in(account, OLD)
    await run.undo()
    assert engine_case.logs_in(account, OLD) and not engine_case.logs_in(account, NEW)
