"""What only ``RedisEngine`` does, against real, throwaway redis-server processes (the contract
every engine keeps is ``test_engine_contract``).

Checked from outside the engine as well, with raw redis-py connections: ACL state (several
passwords, ``nopass``, disabled users) is snapshotted and restored as hashes and flags, an
account may become password-free and back, Redis before 6 is driven through ``requirepass``, a
change survives a restart (``CONFIG REWRITE`` or ``ACL SAVE``, or is reported as not persisted),
a down or hung node is unavailable within the timeout, a missing permission is reported by its
code alone, and names Redis would parse as rules create no user.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from redis.exceptions import AuthenticationError, ResponseError

from keyturn.core.engine_ports import Engine
from keyturn.core.errors import (
    AccountNotFound,
    EngineRejected,
    EngineUnavailable,
    InternalError,
    UnsupportedFeature,
    VerificationFailed,
)
from keyturn.core.model import EngineKind
from keyturn.core.secrets import Secret
from keyturn.engines.redis import RedisEngine
from keyturn.engines.redis_acl import classify, restore_rules
from keyturn.engines.registry import EngineRegistry
from tests.support.fixtures import RedisServerFactory
from tests.support.redis_admin import (
    TIMEOUT,
    acl_users,
    add_user,
    assert_wrongpass,
    pretend_redis_5,
    raw,
    redis_node,
    sha,
    whoami,
)
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.engine


# ---------------------------------------------------------------------- probe and reads


async def test_probe_reports_version_and_password_flag(
    redis_engine: RedisEngine, redis_server: RedisServer, redis_server_factory: RedisServerFactory
) -> None:
    info = await redis_engine.probe(redis_node(redis_server), "default")
    assert info.version.startswith("7.")
    assert info.accounts is True
    assert info.password_free is False
    assert (await redis_engine.probe(redis_node(redis_server))).password_free is None
    assert (await redis_engine.probe(redis_node(redis_server), "nobody")).password_free is None

    open_server = redis_server_factory(password=None)
    assert (await redis_engine.probe(redis_node(open_server), "default")).password_free is True


async def test_list_accounts(redis_engine: RedisEngine, redis_server: RedisServer) -> None:
    await add_user(redis_server, "reader", "on", ">pw1", "~*", "-@all", "+@read")
    await add_user(redis_server, "idle", "off", "nopass")
    accounts = {a.name: a for a in await redis_engine.list_accounts(redis_node(redis_server))}
    assert set(accounts) == {"default", "reader", "idle"}
    assert accounts["default"].privilege == "rw"
    assert accounts["default"].password_free is False
    assert accounts["reader"].privilege == "r"
    assert accounts["reader"].enabled is True
    assert accounts["idle"].enabled is False
    assert accounts["idle"].password_free is True


async def test_password_free_never_creates_an_account(
    redis_engine: RedisEngine, redis_server: RedisServer
) -> None:
    with pytest.raises(AccountNotFound):
        await redis_engine.set_password_free(redis_node(redis_server), "ghost")
    assert await acl_users(redis_server) == {"default"}


# ---------------------------------------------------------------------- changes


async def test_verify_wants_the_new_password_alone(
    redis_engine: RedisEngine, redis_server: RedisServer
) -> None:
    await add_user(redis_server, "app", "on", ">old-pw", "~*", "+@all")
    node = redis_node(redis_server)
    await redis_engine.set_password(node, "app", Secret("new-pw"))
    assert await whoami(redis_server, "app", "new-pw") == "app"
    await assert_wrongpass(redis_server, "app", "old-pw")
    # a second password added behind keyturn's back fails the verification
    await add_user(redis_server, "app", ">extra-pw")
    with pytest.raises(VerificationFailed, match="exactly the new password"):
        await redis_engine.verify(node, "app", Secret("new-pw"))


async def test_password_free_then_back_to_a_password(
    redis_engine: RedisEngine, redis_server: RedisServer
) -> None:
    node = redis_node(redis_server)
    await redis_engine.set_password_free(node, "default")
    await redis_engine.verify(node, "default", None)
    async with raw(redis_server) as client:
        assert await client.execute_command("PING") in (True, b"PONG")
    with pytest.raises(VerificationFailed):
        await redis_engine.verify(node, "default", Secret("whatever"))

    node = replace(node, pending_password=Secret("back-again"))
    await redis_engine.set_password(node, "default", Secret("back-again"))
    await redis_engine.verify(node, "default", Secret("back-again"))
    with pytest.raises(AuthenticationError):
        async with raw(redis_server) as client:
            await client.execute_command("PING")
    with pytest.raises(VerificationFailed, match="still requires a password"):
        await redis_engine.verify(node, "default", None)


async def test_restore_brings_back_hashes_and_flags(
    redis_engine: RedisEngine, redis_server: RedisServer
) -> None:
    await add_user(redis_server, "two", "on", ">first", ">second", "~*", "+@all")
    await add_user(redis_server, "open", "on", "nopass", "~*", "+@all")
    await add_user(redis_server, "locked", "off", ">locked-pw")
    node = redis_node(redis_server)
    snapshots = {
        name: await redis_engine.snapshot(node, name) for name in ("two", "open", "locked")
    }
    assert sorted(snapshots["two"].data["passwords"]) == sorted([sha("first"), sha("second")])
    assert snapshots["open"].data == {"passwords": [], "nopass": True, "enabled": True}
    assert snapshots["locked"].data["enabled"] is False

    for name in snapshots:
        await redis_engine.set_password(node, name, Secret("temporary"))
    await assert_wrongpass(redis_server, "two", "first")

    for snapshot in snapshots.values():
        assert (await redis_engine.restore(node, snapshot)).persisted is True
        assert await redis_engine.snapshot(node, snapshot.account) == snapshot
    assert await whoami(redis_server, "two", "first") == "two"
    assert await whoami(redis_server, "two", "second") == "two"
    await assert_wrongpass(redis_server, "two", "temporary")
    assert await whoami(redis_server, "open", "anything") == "open"
    await assert_wrongpass(redis_server, "locked", "locked-pw")  # disabled again


def test_restore_rules_refuse_malformed_snapshots() -> None:
    good = {"passwords": [sha("x")], "nopass": False, "enabled": True}
    assert restore_rules(good) == ["resetpass", f"#{sha('x')}", "on"]
    for bad in (
        {**good, "passwords": [">plaintext"]},
        {**good, "passwords": "abc"},
        {**good, "nopass": "yes"},
        {"requirepass": "x"},
    ):
        with pytest.raises(InternalError):
            restore_rules(bad)


async def test_requirepass_path_for_redis_before_6(
    redis_engine: RedisEngine, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulated: Redis 7 reporting version 5 still implements ``CONFIG SET requirepass``."""

    pretend_redis_5(monkeypatch)
    old = redis_server.password
    node = replace(redis_node(redis_server), pending_password=Secret("legacy-2"))
    info = await redis_engine.probe(node, "default")
    assert (info.version, info.accounts, info.password_free) == ("5.0.14", False, False)
    assert [a.name for a in await redis_engine.list_accounts(node)] == ["default"]
    with pytest.raises(AccountNotFound):
        await redis_engine.snapshot(node, "app")
    snapshot = await redis_engine.snapshot(node, "default")
    assert snapshot.data == {"requirepass": old}

    assert (await redis_engine.set_password(node, "default", Secret("legacy-2"))).persisted is True
    await redis_engine.verify(node, "default", Secret("legacy-2"))
    await assert_wrongpass(redis_server, "default", old or "")
    await redis_engine.set_password_free(node, "default")
    await redis_engine.verify(node, "default", None)
    await redis_engine.restore(node, snapshot)
    await redis_engine.verify(node, "default", Secret(old or ""))
    with pytest.raises(VerificationFailed):
        await redis_engine.verify(node, "default", Secret("legacy-2"))


# ---------------------------------------------------------------------- persistence


async def test_change_survives_restart_via_config_rewrite(
    redis_engine: RedisEngine, redis_server: RedisServer
) -> None:
    await add_user(redis_server, "app", "on", ">old", "~*", "+@all")
    node = replace(redis_node(redis_server), pending_password=Secret("admin-2"))
    assert (await redis_engine.set_password(node, "app", Secret("app-2"))).persisted is True
    assert (await redis_engine.set_password(node, "default", Secret("admin-2"))).persisted is True
    assert redis_server.conf_path is not None
    assert sha("admin-2") in redis_server.conf_path.read_text()
    assert "admin-2" not in redis_server.conf_path.read_text()

    await redis_engine.forget(node)
    redis_server.restart()
    old_admin, redis_server.password = redis_server.password, "admin-2"
    assert await whoami(redis_server, "default", "admin-2") == "default"
    await assert_wrongpass(redis_server, "default", old_admin or "")
    assert await whoami(redis_server, "app", "app-2") == "app"
    await assert_wrongpass(redis_server, "app", "old")
    await redis_engine.verify(redis_node(redis_server), "app", Secret("app-2"))


async def test_change_survives_restart_via_acl_save(
    redis_engine: RedisEngine, redis_server_factory: RedisServerFactory
) -> None:
    server = redis_server_factory(aclfile=True)
    assert server.aclfile_path is not None and server.conf_path is not None
    conf_before = server.conf_path.read_text()
    node = redis_node(server)
    result = await redis_engine.set_password(
        replace(node, pending_password=Secret("acl-2")), "default", Secret("acl-2")
    )
    assert result.persisted is True
    assert sha("acl-2") in server.aclfile_path.read_text()
    assert server.conf_path.read_text() == conf_before  # ACL SAVE, not CONFIG REWRITE

    await redis_engine.forget(node)
    server.restart()
    assert await whoami(server, "default", "acl-2") == "default"
    await assert_wrongpass(server, "default", server.password or "")


async def test_no_config_file_reports_not_persisted(
    redis_engine: RedisEngine, redis_server_factory: RedisServerFactory
) -> None:
    server = redis_server_factory(config_file=False)
    await add_user(server, "app", "on", ">old", "~*", "+@all")
    node = redis_node(server)
    result = await redis_engine.set_password(node, "app", Secret("Secret-Not-In-Note"))
    assert result.persisted is False
    assert result.note.startswith("not persisted:")
    assert "config file" in result.note
    assert "Secret-Not-In-Note" not in result.note
    await redis_engine.verify(node, "app", Secret("Secret-Not-In-Note"))  # applied all the same


async def test_pipelined_save_reports_as_the_first(
    redis_engine: RedisEngine, redis_server_factory: RedisServerFactory
) -> None:
    """Once the admin client knows the node's aclfile, a change and its save go in one
    round trip: a refused save is still reported, secret-free, and the change applied."""
    server = redis_server_factory(config_file=False)
    await add_user(server, "app", "on", ">old", "~*", "+@all")
    node = redis_node(server)
    assert (await redis_engine.set_password(node, "app", Secret("first-1"))).persisted is False
    result = await redis_engine.set_password(node, "app", Secret("Second-Not-In-Note"))
    assert result.persisted is False
    assert "config file" in result.note
    assert "Second-Not-In-Note" not in result.note
    await redis_engine.verify(node, "app", Secret("Second-Not-In-Note"))


async def test_pipelined_acl_save_survives_restart(
    redis_engine: RedisEngine, redis_server_factory: RedisServerFactory
) -> None:
    server = redis_server_factory(aclfile=True)
    await add_user(server, "app", "on", ">old", "~*", "+@all")
    assert server.aclfile_path is not None
    node = redis_node(server)
    assert (await redis_engine.set_password(node, "app", Secret("app-1"))).persisted is True
    assert (await redis_engine.set_password(node, "app", Secret("app-2"))).persisted is True
    assert (await redis_engine.set_password_free(node, "app")).persisted is True
    assert (await redis_engine.set_password(node, "app", Secret("app-3"))).persisted is True
    assert sha("app-3") in server.aclfile_path.read_text()
    await redis_engine.forget(node)
    server.restart()
    assert await whoami(server, "app", "app-3") == "app"


# ---------------------------------------------------------------------- failures


async def test_down_node_is_unavailable_quickly(
    redis_engine: RedisEngine, redis_server: RedisServer
) -> None:
    node = redis_node(redis_server)
    await redis_engine.probe(node)
    redis_server.stop()
    started = time.monotonic()
    with pytest.raises(EngineUnavailable) as caught:
        await redis_engine.snapshot(node, "default")
    assert time.monotonic() - started < TIMEOUT
    assert node.address.endpoint in caught.value.message


async def test_hung_node_is_unavailable_within_the_timeout(
    redis_engine: RedisEngine, redis_server: RedisServer
) -> None:
    quick = RedisEngine(timeout=0.5)
    node = redis_node(redis_server)
    try:
        await quick.probe(node)  # one pooled connection is open when the server hangs
        redis_server.pause()
        for call in (quick.probe(node, "default"), quick.snapshot(node, "default")):
            started = time.monotonic()
            with pytest.raises(EngineUnavailable, match="timed out"):
                await call
            assert time.monotonic() - started < 0.5 + 1.5
    finally:
        redis_server.resume()
        await quick.close()
    assert (await redis_engine.probe(node)).accounts is True


async def test_missing_permission_is_rejected_with_the_code_only(
    redis_engine: RedisEngine, redis_server: RedisServer
) -> None:
    await add_user(redis_server, "ops", "on", ">ops-pw", "-@all", "+info", "+acl|getuser")
    node = redis_node(redis_server, user="ops", password="ops-pw")
    with pytest.raises(EngineRejected) as caught:
        await redis_engine.set_password(node, "default", Secret("Never-Shown"))
    assert caught.value.message.endswith(": NOPERM")
    assert "Never-Shown" not in caught.value.message


def test_error_replies_are_reduced_to_their_code() -> None:
    echo = ResponseError("ERR Error in ACL SETUSER modifier '>hunter2': Syntax error")
    error = classify(echo, "127.0.0.1:1", "set password")
    assert isinstance(error, EngineRejected)
    assert error.message == "127.0.0.1:1 refused set password: ERR"
    weird = ResponseError("lower-case >hunter2 reply")
    assert "hunter2" not in str(classify(weird, "127.0.0.1:1", "x"))


# ---------------------------------------------------------------------- odd names


@pytest.mark.parametrize(
    "name", ["x on >pw ~* +@all", "new\nline", "tab\tname", " lead", "nul\x00byte"]
)
async def test_names_redis_refuses_never_create_users(
    redis_engine: RedisEngine, redis_server: RedisServer, name: str
) -> None:
    node = redis_node(redis_server)
    with pytest.raises(AccountNotFound):
        await redis_engine.snapshot(node, name)
    with pytest.raises(AccountNotFound):
        await redis_engine.set_password(node, name, Secret("pw"))
    assert await acl_users(redis_server) == {"default"}
    with pytest.raises(AuthenticationError):
        await whoami(redis_server, "x", "pw")


# ---------------------------------------------------------------------- registry


async def test_registry_shares_one_driver_per_kind() -> None:
    registry = EngineRegistry(timeout=1.5)
    driver: Engine = registry.engine(EngineKind.REDIS)
    assert isinstance(driver, RedisEngine)
    assert driver.timeout == 1.5
    assert registry.engine(EngineKind.REDIS) is driver
    await registry.close()
    assert registry.engine(EngineKind.REDIS) is not driver
    with pytest.raises(UnsupportedFeature):
        EngineRegistry(factories={}).engine(EngineKind.REDIS)
    with pytest.raises(ValueError):
        EngineRegistry(timeout=0)
    await registry.close()
