"""Alibaba Cloud R-kvstore (2015-01-01) end to end: the official SDKs — the Tea SDK with ACS3
and with RPC v1 signatures, and the legacy aliyun-python-sdk-r-kvstore — against a real keyturn
server managing ACL accounts on real throwaway redis-servers.

It proves that each SDK resets, creates, changes and lists accounts (checked by logging in to
Redis), that every seed error code that can happen here reaches each SDK with its code and
HTTP status, and that no password leaks into the server's log or data dir. Protocol edges
(replays, stale times, junk) are in ``test_alibaba_protocol.py``. keyturn logs in with a
dedicated admin user; the accounts it may not touch (that admin, superusers, ``default`` when
keyturn logs in with it) answer ``OperationDenied`` and stay as they were.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import socketserver
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis

from keyturn.core.model import Product
from tests.support.alibaba_sdk import SDKS, KvstoreSdk, sdk_error
from tests.support.keyturn_server import OTHER_TENANT, KeyturnServer
from tests.support.logins import can_login, redis_login
from tests.support.passwords import USED_PASSWORDS, leaked, new_password
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.engine

KVSTORE = Product.ALIBABA_KVSTORE
UUID_UPPER = re.compile(r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}")


def new_instance_id() -> str:
    return "r-" + secrets.token_hex(7)


def admin(server: RedisServer) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1", port=server.port, password=server.password, protocol=2, driver_info=None
    )


def add_user(server: RedisServer, name: str, password: str, *commands: str) -> None:
    """An ACL user; by default a data account (every command but the dangerous ones), since
    a user with every command is a superuser that keyturn refuses to reset."""
    client = admin(server)
    try:
        rules = commands or ("+@all", "-@dangerous")
        client.execute_command("ACL", "SETUSER", name, "on", f">{password}", "~*", "&*", *rules)
    finally:
        client.close()


class Instance:
    """A registered alibaba-kvstore instance on a redis-server, with an ACL user ``appuser``.
    keyturn logs in with a dedicated admin user, or (``own_admin``) as ``default`` with
    ``allow_admin_reset``, for the tests of keyturn resetting its own account."""

    def __init__(
        self,
        keyturn: KeyturnServer,
        server: RedisServer,
        tenant: str | None = None,
        *,
        own_admin: bool = False,
    ):
        self.id = new_instance_id()
        self.server = server
        self.user_password = new_password()
        add_user(server, "appuser", self.user_password)
        extra: dict[str, Any] = {"tenant": tenant} if tenant else {}
        keyturn.add_instance(
            self.id,
            [server.url() if own_admin else server.admin_url()],
            product=KVSTORE,
            region="cn-hangzhou",
            name="orders-cache",
            allow_admin_reset=own_admin,
            **extra,
        )


@pytest.fixture
def instance(keyturn: KeyturnServer, redis_server: RedisServer) -> Instance:
    return Instance(keyturn, redis_server)


@pytest.mark.parametrize("kind", SDKS)
def test_reset_account_password(keyturn: KeyturnServer, instance: Instance, kind: str) -> None:
    sdk = KvstoreSdk(kind, keyturn.endpoint)
    new = new_password()
    answer = sdk.call(
        "ResetAccountPassword", InstanceId=instance.id, AccountName="appuser", AccountPassword=new
    )
    assert UUID_UPPER.fullmatch(answer["RequestId"])
    assert can_login(instance.server.port, new, "appuser")
    assert not can_login(instance.server.port, instance.user_password, "appuser")


def test_default_account_is_named_after_the_instance(
    keyturn: KeyturnServer, redis_server: RedisServer
) -> None:
    """AccountName = InstanceId is Redis' ``default`` user, which keyturn itself logs in with
    here (the instance opts in): the reset hands keyturn the new credential, and it keeps
    working afterwards."""
    instance = Instance(keyturn, redis_server, own_admin=True)
    sdk = KvstoreSdk("tea", keyturn.endpoint)
    new = new_password()
    sdk.call(
        "ResetAccountPassword", InstanceId=instance.id, AccountName=instance.id, AccountPassword=new
    )
    assert can_login(instance.server.port, new, "default")
    assert not can_login(instance.server.port, instance.server.password or "", "default")
    again = new_password()
    sdk.call(
        "ResetAccountPassword", InstanceId=instance.id, AccountName="appuser", AccountPassword=again
    )
    assert can_login(instance.server.port, again, "appuser")


@pytest.mark.parametrize("kind", SDKS)
def test_seed_error_codes(
    keyturn: KeyturnServer, instance: Instance, redis_server_factory: Any, kind: str
) -> None:
    sdk = KvstoreSdk(kind, keyturn.endpoint)
    port = instance.server.port

    def reset(**params: str) -> tuple[str, int]:
        fields = {"InstanceId": instance.id, "AccountName": "appuser", **params}
        return sdk_error(lambda: sdk.call("ResetAccountPassword", **fields))

    bad_format = ("InvalidAccountPassword.Format", 400)
    assert reset(AccountPassword="Short1!") == bad_format
    assert reset(AccountPassword="alllowercase1") == bad_format  # two kinds of characters
    assert reset(AccountPassword="Abcdefgh 123") == bad_format  # a space is not allowed
    assert reset(AccountPassword="") == bad_format
    password = new_password()
    assert reset(AccountName="App-User", AccountPassword=password) == (
        "InvalidAccountName.Format",
        400,
    )
    assert reset(AccountName="nosuchuser", AccountPassword=password) == (
        "InvalidAccountName.NotFound",
        404,
    )
    assert reset(InstanceId="r-doesnotexist00", AccountPassword=password) == (
        "InvalidInstanceId.NotFound",
        404,
    )
    foreign = Instance(keyturn, redis_server_factory(), tenant=OTHER_TENANT)
    assert reset(InstanceId=foreign.id, AccountPassword=password) == (
        "InvalidInstanceId.NotFound",
        404,
    )
    assert can_login(port, instance.user_password, "appuser")  # nothing was applied

    unknown = KvstoreSdk(kind, keyturn.endpoint, key_id="LTAIkeyturnNOSUCHKEY")
    fields = {"InstanceId": instance.id, "AccountName": "appuser", "AccountPassword": password}
    assert sdk_error(lambda: unknown.call("ResetAccountPassword", **fields)) == (
        "InvalidAccessKeyId.NotFound",
        404,
    )
    # The legacy SDK splits this message on ':'; it must raise ServerException, not IndexError.
    forged = KvstoreSdk(kind, keyturn.endpoint, secret="not-the-secret")
    assert sdk_error(lambda: forged.call("ResetAccountPassword", **fields)) == (
        "SignatureDoesNotMatch",
        400,
    )

    created = new_password()
    create = {"InstanceId": instance.id, "AccountName": "reporting", "AccountPassword": created}
    answer = sdk.call("CreateAccount", **create)
    assert answer["AccountName"] == answer["AcountName"] == "reporting"
    assert answer["InstanceId"] == instance.id
    assert sdk_error(lambda: sdk.call("CreateAccount", **create)) == (
        "InvalidAccountName.Duplicate",
        400,
    )
    assert can_login(port, created, "reporting")


class FakeRedis5(socketserver.ThreadingTCPServer):
    """Just enough RESP2 to look like a Redis 5.0 server (no ACL users) to keyturn's admin
    login: AUTH, INFO, PING and CONFIG GET. No Redis 5 binary exists on the test machines."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Redis5Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Redis5Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        while True:
            command = self._read_command()
            if command is None:
                return
            name = command[0].upper() if command else b""
            if name == b"AUTH":
                self.wfile.write(b"+OK\r\n")
            elif name == b"PING":
                self.wfile.write(b"+PONG\r\n")
            elif name == b"ROLE":
                self.wfile.write(b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n")
            elif name == b"INFO":
                info = b"# Server\r\nredis_version:5.0.14\r\nredis_mode:standalone\r\n"
                self.wfile.write(b"$%d\r\n%s\r\n" % (len(info), info))
            elif name == b"CONFIG" and len(command) == 3:
                key, value = command[2], b"not-a-real-password"
                self.wfile.write(
                    b"*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(value), value)
                )
            else:
                self.wfile.write(b"-ERR unknown command\r\n")

    def _read_command(self) -> list[bytes] | None:
        line = self.rfile.readline()
        if not line:
            return None
        if not line.startswith(b"*"):
            return line.split()
        parts = []
        for _ in range(int(line[1:])):
            size = int(self.rfile.readline()[1:])
            parts.append(self.rfile.read(size + 2)[:-2])
        return parts


@pytest.fixture
def redis5() -> Iterator[FakeRedis5]:
    server = FakeRedis5()
    yield server
    server.close()


@pytest.mark.parametrize("kind", SDKS)
def test_engine_without_acl_accounts(keyturn: KeyturnServer, redis5: FakeRedis5, kind: str) -> None:
    """Redis before 6 has no ACL users: InvalidEngineVersion.Format, for resets and creation."""
    instance_id = new_instance_id()
    keyturn.add_instance(
        instance_id, [f"redis://default:admin-pw@127.0.0.1:{redis5.port}"], product=KVSTORE
    )
    sdk = KvstoreSdk(kind, keyturn.endpoint)
    fields = {
        "InstanceId": instance_id,
        "AccountName": "appuser",
        "AccountPassword": new_password(),
    }
    expected = ("InvalidEngineVersion.Format", 400)
    assert sdk_error(lambda: sdk.call("ResetAccountPassword", **fields)) == expected
    assert sdk_error(lambda: sdk.call("CreateAccount", **fields)) == expected


def test_task_exists(tmp_path: Path, redis_server: RedisServer) -> None:
    """While a reset of an account is held after applying (fault pause), another reset of the
    same account is refused with TaskExists by every SDK; the first one then succeeds."""
    server = KeyturnServer(tmp_path / "paused", extra_env={"KEYTURN_FAULT_PAUSE": "after_apply=3"})
    server.start()
    try:
        instance = Instance(server, redis_server)
        first = new_password()
        outcome: list[object] = []

        def run_first() -> None:
            try:
                outcome.append(
                    KvstoreSdk("tea", server.endpoint).call(
                        "ResetAccountPassword",
                        InstanceId=instance.id,
                        AccountName="appuser",
                        AccountPassword=first,
                    )
                )
            except Exception as exc:  # reported by the assertion below
                outcome.append(exc)

        thread = threading.Thread(target=run_first)
        thread.start()
        applied = hashlib.sha256(first.encode()).hexdigest()
        deadline = time.monotonic() + 10
        client = admin(redis_server)
        try:
            user: Any = client.acl_getuser("appuser")
            while applied not in user["passwords"]:
                assert time.monotonic() < deadline, "the first reset never reached the engine"
                time.sleep(0.02)
                user = client.acl_getuser("appuser")
        finally:
            client.close()
        second = new_password()
        for kind in SDKS:
            sdk = KvstoreSdk(kind, server.endpoint)
            fields = {"InstanceId": instance.id, "AccountName": "appuser"}
            assert sdk_error(
                partial(sdk.call, "ResetAccountPassword", **fields, AccountPassword=second)
            ) == ("TaskExists", 400)
        thread.join(30)
        assert outcome and isinstance(outcome[0], dict), outcome
        assert can_login(redis_server.port, first, "appuser")
        assert leaked(server, USED_PASSWORDS) == []
    finally:
        server.stop()


@pytest.mark.parametrize("kind", SDKS)
def test_read_only_account(keyturn: KeyturnServer, instance: Instance, kind: str) -> None:
    sdk = KvstoreSdk(kind, keyturn.endpoint)
    password = new_password()
    sdk.call(
        "CreateAccount",
        InstanceId=instance.id,
        AccountName="reader",
        AccountPassword=password,
        AccountPrivilege="RoleReadOnly",
        AccountType="Normal",
        AccountDescription="dashboards",
    )
    listed = sdk.call("DescribeAccounts", InstanceId=instance.id)
    accounts = {a["AccountName"]: a for a in listed["Accounts"]["Account"]}
    assert set(accounts) == {instance.id, "appuser", "reader", "kt_admin"}
    reader = accounts["reader"]
    assert reader["AccountStatus"] == "Available" and reader["AccountType"] == "Normal"
    privileges = reader["DatabasePrivileges"]["DatabasePrivilege"]
    assert privileges == [{"AccountPrivilege": "RoleReadOnly"}]
    assert accounts["appuser"]["DatabasePrivileges"]["DatabasePrivilege"] == [
        {"AccountPrivilege": "RoleReadWrite"}
    ]
    assert accounts[instance.id]["AccountType"] == "Super"
    assert listed["TotalCount"] == 4 and listed["PageNumber"] == 1

    only = sdk.call("DescribeAccounts", InstanceId=instance.id, AccountName="reader")
    assert [a["AccountName"] for a in only["Accounts"]["Account"]] == ["reader"]

    seed = admin(instance.server)
    seed.set("greeting", "hello")
    seed.close()
    client = redis_login(instance.server.port, password, "reader")
    assert client is not None
    try:
        assert client.get("greeting") == b"hello"
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set("greeting", "changed")
    finally:
        client.close()


@pytest.mark.parametrize("kind", SDKS)
def test_modify_account_password(keyturn: KeyturnServer, instance: Instance, kind: str) -> None:
    sdk = KvstoreSdk(kind, keyturn.endpoint)
    port = instance.server.port
    new = new_password()
    sdk.call(
        "ModifyAccountPassword",
        InstanceId=instance.id,
        AccountName="appuser",
        OldAccountPassword=instance.user_password,
        NewAccountPassword=new,
    )
    assert can_login(port, new, "appuser")
    assert not can_login(port, instance.user_password, "appuser")

    def modify(old: str) -> tuple[str, int]:
        return sdk_error(
            lambda: sdk.call(
                "ModifyAccountPassword",
                InstanceId=instance.id,
                AccountName="appuser",
                OldAccountPassword=old,
                NewAccountPassword=new_password(),
            )
        )

    wrong = new_password()
    for _ in range(4):
        assert modify(wrong) == ("InvalidAccountPassword.Mismatch", 400)
    assert modify(wrong) == ("Account.Locked", 403)  # the fifth wrong one locks
    assert modify(new) == ("Account.Locked", 403)
    assert can_login(port, new, "appuser")


@pytest.mark.parametrize("kind", SDKS)
def test_instance_reads(
    keyturn: KeyturnServer, instance: Instance, redis_server_factory: Any, kind: str
) -> None:
    sdk = KvstoreSdk(kind, keyturn.endpoint)
    # A reset probes the engine, which records its version for the listings.
    sdk.call(
        "ResetAccountPassword",
        InstanceId=instance.id,
        AccountName="appuser",
        AccountPassword=new_password(),
    )
    attribute = sdk.call("DescribeInstanceAttribute", InstanceId=instance.id)
    [item] = attribute["Instances"]["DBInstanceAttribute"]
    assert item["InstanceId"] == instance.id and item["InstanceName"] == "orders-cache"
    assert item["Port"] == instance.server.port and item["PrivateIp"] == "127.0.0.1"
    assert item["EngineVersion"] == "7.0" and item["RegionId"] == "cn-hangzhou"
    assert (item["InstanceStatus"], item["VpcAuthMode"], item["NodeType"]) == (
        "Normal",
        "Open",
        "STAND_ALONE",
    )

    second = Instance(keyturn, redis_server_factory())
    foreign = Instance(keyturn, redis_server_factory(), tenant=OTHER_TENANT)
    ids = f"{instance.id},{second.id},{foreign.id}"
    listed = sdk.call("DescribeInstances", InstanceIds=ids, PageSize=1, PageNumber=2)
    assert (listed["TotalCount"], listed["PageSize"], listed["PageNumber"]) == (2, 1, 2)
    [page] = listed["Instances"]["KVStoreInstance"]
    assert page["InstanceId"] in {instance.id, second.id}
    everything = sdk.call("DescribeInstances", PageSize=100)
    seen = {i["InstanceId"] for i in everything["Instances"]["KVStoreInstance"]}
    assert {instance.id, second.id} <= seen and foreign.id not in seen
    assert sdk_error(lambda: sdk.call("DescribeInstances", PageSize=101)) == (
        "InvalidParameter",
        400,
    )
    assert sdk_error(lambda: sdk.call("DescribeInstanceAttribute", InstanceId=foreign.id)) == (
        "InvalidInstanceId.NotFound",
        404,
    )


@pytest.mark.parametrize("kind", SDKS)
def test_protected_accounts(keyturn: KeyturnServer, instance: Instance, kind: str) -> None:
    """keyturn's own admin user and a user with every command (a superuser): no reset, no
    change (not even an old-password check), no creation over keyturn's name; OperationDenied
    and both still log in as before. ``default`` is the instance password: allowed here."""
    server = instance.server
    ops_password = new_password()
    add_user(server, "ops", ops_password, "+@all")
    sdk = KvstoreSdk(kind, keyturn.endpoint)
    denied = ("OperationDenied", 403)
    for account, current in (("kt_admin", server.admin_password), ("ops", ops_password)):
        assert current is not None
        fields = {"InstanceId": instance.id, "AccountName": account}
        assert (
            sdk_error(
                partial(sdk.call, "ResetAccountPassword", **fields, AccountPassword=new_password())
            )
            == denied
        )
        assert (
            sdk_error(
                partial(
                    sdk.call,
                    "ModifyAccountPassword",
                    **fields,
                    OldAccountPassword=current,
                    NewAccountPassword=new_password(),
                )
            )
            == denied
        )
        assert can_login(server.port, current, account)
    create = {"InstanceId": instance.id, "AccountName": "kt_admin"}
    created = new_password()
    assert sdk_error(lambda: sdk.call("CreateAccount", **create, AccountPassword=created)) == denied
    assert not can_login(server.port, created, "kt_admin")
    new = new_password()
    sdk.call(
        "ResetAccountPassword", InstanceId=instance.id, AccountName=instance.id, AccountPassword=new
    )
    assert can_login(server.port, new, "default")


def test_default_keyturn_logs_in_with_is_denied(
    keyturn: KeyturnServer, redis_server: RedisServer
) -> None:
    """Without the opt-in, an instance keyturn logs in to as ``default`` refuses to reset it
    (AccountName = InstanceId, or ``default``)."""
    instance_id = new_instance_id()
    keyturn.add_instance(instance_id, [redis_server.url()], product=KVSTORE)
    sdk = KvstoreSdk("tea", keyturn.endpoint)
    for name in (instance_id, "default"):
        fields = {"InstanceId": instance_id, "AccountName": name}
        assert sdk_error(
            partial(sdk.call, "ResetAccountPassword", **fields, AccountPassword=new_password())
        ) == ("OperationDenied", 403)
    assert can_login(redis_server.port, redis_server.password or "", "default")


def test_concurrent_wrong_old_passwords(keyturn: KeyturnServer, instance: Instance) -> None:
    """Nineteen ModifyAccountPassword calls with wrong old passwords at once, from as many
    threads: they are checked one at a time, so exactly four answer Mismatch and the fifth
    locks; the rest, and the right old password after them, answer Account.Locked."""
    barrier = threading.Barrier(19)
    answers: list[tuple[str, int]] = []

    def guess(n: int) -> None:
        sdk = KvstoreSdk("tea", keyturn.endpoint)
        barrier.wait(10)
        answers.append(
            sdk_error(
                lambda: sdk.call(
                    "ModifyAccountPassword",
                    InstanceId=instance.id,
                    AccountName="appuser",
                    OldAccountPassword=f"Wrong_Passw0rd{n}",
                    NewAccountPassword=new_password(),
                )
            )
        )

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(19)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(answers) == sorted(
        [("InvalidAccountPassword.Mismatch", 400)] * 4 + [("Account.Locked", 403)] * 15
    )
    sdk = KvstoreSdk("tea", keyturn.endpoint)
    fields = {"InstanceId": instance.id, "AccountName": "appuser"}
    assert sdk_error(
        lambda: sdk.call(
            "ModifyAccountPassword",
            **fields,
            OldAccountPassword=instance.user_password,
            NewAccountPassword=new_password(),
        )
    ) == ("Account.Locked", 403)
    assert can_login(instance.server.port, instance.user_password, "appuser")


def test_no_secret_leaks(keyturn: KeyturnServer) -> None:
    """Runs last in this module: no password set above is in the log or the data dir."""
    assert USED_PASSWORDS
    assert leaked(keyturn, USED_PASSWORDS) == []
