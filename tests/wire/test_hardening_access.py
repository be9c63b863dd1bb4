"""Security hardening (issue 11) of what an authenticated key can reach and repeat, through the
official SDKs and raw signed requests against real keyturn servers:

- policies scoped by region bind listings and task reads: a key never lists, nor reads the
  task of, an instance its policies do not allow, whatever region the request names (item 2);
- replay memory survives a restart and is shared by two servers on one store (item 3);
- a nonce is spent only by a call that passed the rate limit (item 7);
- policies can name accounts (``.../instance/ID/account/NAME``; item 5's resource forms).
"""

from __future__ import annotations

import itertools
import json
import math
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from keyturn.core.access import KeyPolicies
from keyturn.core.model import Product
from tests.support.alibaba_sdk import KvstoreSdk, acs3_request, sdk_error
from tests.support.huawei_sdk import ListInstancesRequest, dcs_client
from tests.support.keyturn_server import HW_PROJECT, TENANT, KeyturnServer
from tests.support.logins import can_login
from tests.support.passwords import USED_PASSWORDS, new_password
from tests.support.redis_server import RedisServer
from tests.support.tencent_raw import tc3_post, tencent_error
from tests.support.wire_capture import RecordingProxy, captured, send_raw

pytestmark = pytest.mark.engine

DENIED_TC = "AuthFailure.UnauthorizedOperation"
GZ, SH = "ap-guangzhou", "ap-shanghai"


def make_key(keyturn: KeyturnServer, tenant: str, document: dict[str, Any]) -> tuple[str, str]:
    attached = KeyPolicies(inline=json.dumps(document))
    key = keyturn.with_admin(lambda admin: admin.create_key(tenant, policies=attached))
    USED_PASSWORDS.append(key.secret.reveal())
    return key.id, key.secret.reveal()


def cam(*statements: tuple[str, list[str], list[str]]) -> dict[str, Any]:
    return {
        "version": "2.0",
        "statement": [
            {"effect": effect, "action": actions, "resource": resources}
            for effect, actions, resources in statements
        ],
    }


def listed(keyturn: KeyturnServer, key: tuple[str, str], region: str) -> set[str]:
    """Instance ids a Tencent DescribeInstances answers with, the request naming ``region``."""
    found: set[str] = set()
    offset = 0
    while True:
        response = tc3_post(
            keyturn.endpoint,
            "DescribeInstances",
            {"Limit": 2, "Offset": offset},
            region=region,
            key_id=key[0],
            secret=key[1],
        )
        assert tencent_error(response) is None, response.text
        body = response.json()["Response"]
        found |= {item["InstanceId"] for item in body["InstanceSet"]}
        offset += 2
        if offset >= body["TotalCount"]:
            assert len(found) == body["TotalCount"]
            return found


@pytest.fixture(scope="module")
def regional(keyturn: KeyturnServer) -> dict[str, list[str]]:
    """Three Tencent Redis instances in Guangzhou and three in Shanghai (never contacted)."""
    made: dict[str, list[str]] = {GZ: [], SH: []}
    for region in (GZ, SH):
        for _ in range(3):
            instance_id = "crs-" + secrets.token_hex(5)
            keyturn.add_instance(
                instance_id, ["redis://default:unused-Admin-1@127.0.0.1:1"], region=region
            )
            made[region].append(instance_id)
    return made


def test_a_region_scoped_listing_never_shows_other_regions(
    keyturn: KeyturnServer, regional: dict[str, list[str]]
) -> None:
    shanghai_only = make_key(
        keyturn,
        TENANT,
        cam(("allow", ["redis:DescribeInstances"], [f"qcs::redis:{SH}:uin/{TENANT}:instance/*"])),
    )
    for claimed in (GZ, SH, "na-ashburn"):
        seen = listed(keyturn, shanghai_only, claimed)
        assert seen == set(regional[SH]), claimed

    not_guangzhou = make_key(
        keyturn,
        TENANT,
        cam(
            ("allow", ["redis:*"], ["*"]),
            ("deny", ["redis:DescribeInstances"], [f"qcs::redis:{GZ}:uin/{TENANT}:instance/*"]),
        ),
    )
    for claimed in (GZ, SH):
        seen = listed(keyturn, not_guangzhou, claimed)
        assert not seen & set(regional[GZ])
        assert set(regional[SH]) <= seen
    # A key whose policies name the action nowhere is refused outright, as before.
    nothing = make_key(keyturn, TENANT, cam(("allow", ["redis:ResetPassword"], ["*"])))
    response = tc3_post(
        keyturn.endpoint, "DescribeInstances", {}, key_id=nothing[0], secret=nothing[1]
    )
    assert tencent_error(response) == DENIED_TC


def test_a_task_read_is_authorized_on_the_tasks_own_instance(
    keyturn: KeyturnServer, redis_server_factory: Any
) -> None:
    server: RedisServer = redis_server_factory()
    instance_id = "crs-" + secrets.token_hex(5)
    # A dedicated admin login: the reset changes ``default``, which keyturn does not log in as.
    admin_password = new_password()
    with redis.Redis(port=server.port, password=server.password, protocol=2) as admin:
        admin.execute_command(
            "ACL", "SETUSER", "keyturn", "on", f">{admin_password}", "~*", "&*", "+@all"
        )
    keyturn.add_instance(
        instance_id, [f"redis://keyturn:{admin_password}@127.0.0.1:{server.port}"], region=GZ
    )
    password = new_password()
    reset = tc3_post(
        keyturn.endpoint, "ResetPassword", {"InstanceId": instance_id, "Password": password}
    )
    assert tencent_error(reset) is None, reset.text
    task_id = reset.json()["Response"]["TaskId"]

    shanghai_only = make_key(
        keyturn,
        TENANT,
        cam(
            ("allow", ["redis:DescribeTaskInfo", "redis:DescribeTaskList"], [f"qcs::redis:{SH}:*"])
        ),
    )
    for claimed in (GZ, SH):
        read = tc3_post(
            keyturn.endpoint,
            "DescribeTaskInfo",
            {"TaskId": task_id},
            region=claimed,
            key_id=shanghai_only[0],
            secret=shanghai_only[1],
        )
        assert tencent_error(read) == DENIED_TC
        listing = tc3_post(
            keyturn.endpoint,
            "DescribeTaskList",
            {"Limit": 100},
            region=claimed,
            key_id=shanghai_only[0],
            secret=shanghai_only[1],
        )
        assert tencent_error(listing) is None
        tasks = listing.json()["Response"]["Tasks"]
        assert all(task["InstanceId"] != instance_id for task in tasks)
    # The tenant's administrator key reads it.
    deadline = time.monotonic() + 20
    while True:
        info = tc3_post(keyturn.endpoint, "DescribeTaskInfo", {"TaskId": task_id}).json()
        if info["Response"]["Status"] in ("succeed", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert info["Response"]["Status"] == "succeed"
    assert can_login(server.port, password)


def test_alibaba_and_huawei_listings_follow_the_policy_per_item(keyturn: KeyturnServer) -> None:
    ali = {region: "r-" + secrets.token_hex(7) for region in ("cn-hangzhou", "cn-beijing")}
    for region, instance_id in ali.items():
        keyturn.add_instance(
            instance_id,
            ["redis://default:unused-Admin-1@127.0.0.1:1"],
            product=Product.ALIBABA_KVSTORE,
            region=region,
        )
    key = make_key(
        keyturn,
        TENANT,
        {
            "Version": "1",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "kvstore:DescribeInstances",
                    "Resource": f"acs:kvstore:cn-beijing:{TENANT}:instance/*",
                }
            ],
        },
    )
    sdk = KvstoreSdk("tea", keyturn.endpoint, key_id=key[0], secret=key[1])
    body = sdk.call("DescribeInstances", RegionId="cn-hangzhou", PageSize=100)
    ids = {i["InstanceId"] for i in body["Instances"]["KVStoreInstance"]}
    assert ali["cn-beijing"] in ids and ali["cn-hangzhou"] not in ids

    hw = {region: secrets.token_hex(16) for region in ("cn-north-4", "cn-east-3")}
    for region, raw in hw.items():
        instance_id = f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"
        hw[region] = instance_id
        keyturn.add_instance(
            instance_id,
            ["redis://default:unused-Admin-1@127.0.0.1:1"],
            product=Product.HUAWEI_DCS,
            region=region,
            tenant=HW_PROJECT,
        )
    hw_key = make_key(
        keyturn,
        HW_PROJECT,
        {
            "Version": "1.1",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["dcs:instance:list"],
                    "Resource": [f"DCS:cn-east-3:{HW_PROJECT}:instance:*"],
                }
            ],
        },
    )
    client = dcs_client(keyturn.endpoint, ak=hw_key[0], sk=hw_key[1])
    answer = client.list_instances(ListInstancesRequest(limit=1000))
    ids = {item.instance_id for item in answer.instances}
    assert hw["cn-east-3"] in ids and hw["cn-north-4"] not in ids
    assert answer.instance_num == len(ids)


# --------------------------------------------------------------------------- replays


@pytest.fixture
def shared_store(tmp_path: Path) -> Iterator[tuple[KeyturnServer, KeyturnServer]]:
    """Two keyturn servers on one data dir (one store), as two nodes would be."""
    first = KeyturnServer(tmp_path / "a")
    second = KeyturnServer(tmp_path / "b")
    second.data_dir = first.data_dir
    first.start()
    second.start()
    yield first, second
    for server in (first, second):
        if server.process is not None:
            server.stop()


def test_captured_changes_stay_refused_after_a_restart_and_on_another_node(
    shared_store: tuple[KeyturnServer, KeyturnServer], redis_server_factory: Any
) -> None:
    first, second = shared_store
    server: RedisServer = redis_server_factory()
    # An Alibaba account change, captured as the SDK sent it.
    with redis.Redis(port=server.port, password=server.password, protocol=2) as admin:
        admin.execute_command(
            "ACL", "SETUSER", "app", "on", ">Kt-Initial-Pass9", "~*", "+@read", "+ping"
        )
    USED_PASSWORDS.append("Kt-Initial-Pass9")
    instance_id = "r-" + secrets.token_hex(7)
    first.add_instance(instance_id, [server.url()], product=Product.ALIBABA_KVSTORE)
    proxy = RecordingProxy(first.port)
    try:
        password = new_password()
        KvstoreSdk("tea", proxy.endpoint).call(
            "ResetAccountPassword",
            InstanceId=instance_id,
            AccountName="app",
            AccountPassword=password,
        )
        raw = captured(proxy)
    finally:
        proxy.close()
    assert can_login(server.port, password, "app")
    # Someone changes it since; the replay must not set the captured password back.
    later = new_password()
    KvstoreSdk("tea", first.endpoint).call(
        "ResetAccountPassword", InstanceId=instance_id, AccountName="app", AccountPassword=later
    )
    first.stop()
    first.start()
    for node in (first, second):
        status, body = send_raw(node.endpoint, raw)
        assert (status, body["Code"]) == (400, "SignatureNonceUsed"), node.endpoint
    assert can_login(server.port, later, "app")
    assert not can_login(server.port, password, "app")


def test_a_tc3_change_replayed_after_a_restart_is_refused(
    shared_store: tuple[KeyturnServer, KeyturnServer], redis_server_factory: Any
) -> None:
    first, second = shared_store
    server: RedisServer = redis_server_factory()
    admin_password = new_password()
    with redis.Redis(port=server.port, password=server.password, protocol=2) as admin:
        admin.execute_command(
            "ACL", "SETUSER", "keyturn", "on", f">{admin_password}", "~*", "&*", "+@all"
        )
    instance_id = "crs-" + secrets.token_hex(5)
    first.add_instance(instance_id, [f"redis://keyturn:{admin_password}@127.0.0.1:{server.port}"])
    password = new_password()
    response = tc3_post(
        first.endpoint, "ResetPassword", {"InstanceId": instance_id, "Password": password}
    )
    assert tencent_error(response) is None
    request = response.request
    raw = (
        f"POST / HTTP/1.1\r\nHost: {first.endpoint}\r\n".encode()
        + b"".join(
            f"{name}: {value}\r\n".encode()
            for name, value in request.headers.items()
            if name.lower() not in ("host", "connection")
        )
        + b"Connection: close\r\n\r\n"
        + request.content
    )
    first.stop()
    first.start()
    for node in (first, second):
        _, body = send_raw(node.endpoint, raw)
        assert body["Response"]["Error"]["Code"] == "AuthFailure.SignatureFailure", node.endpoint
    listing = tc3_post(first.endpoint, "DescribeTaskList", {"InstanceId": instance_id})
    assert listing.json()["Response"]["TotalCount"] == 1


def test_a_throttled_request_does_not_spend_its_nonce(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    keyturn = KeyturnServer(
        tmp_path / "k", extra_env={"KEYTURN_RATE_LIMITS": "kvstore:DescribeInstanceAttribute=1"}
    )
    keyturn.start()
    try:
        instance_id = "r-" + secrets.token_hex(7)
        keyturn.add_instance(instance_id, [redis_server.url()], product=Product.ALIBABA_KVSTORE)
        params = {"InstanceId": instance_id}

        def post(query: str, headers: dict[str, str]) -> httpx.Response:
            return httpx.post(f"http://{keyturn.endpoint}/?{query}", headers=headers, timeout=10)

        # Two requests in one second: the second is throttled...
        while True:
            first = acs3_request(keyturn.endpoint, "DescribeInstanceAttribute", params)
            second = acs3_request(keyturn.endpoint, "DescribeInstanceAttribute", params)
            # Start just after a second begins, so its window is fresh: an earlier try that
            # straddled two seconds counted its requests in windows already past.
            time.sleep(math.ceil(time.time()) - time.time() + 0.02)
            start = time.time()
            a, b = post(*first), post(*second)
            if int(start) == int(time.time()):
                break
            time.sleep(0.2)
        assert a.status_code == 200
        assert (b.status_code, b.json()["Code"]) == (400, "Throttling.User")
        # ... and the very same bytes go through in the next second: the nonce was not spent.
        time.sleep(1.1)
        again = post(*second)
        assert again.status_code == 200, again.text
        # Sent once more (in a later second, within the limit), it is the replay it now is.
        time.sleep(1.1)
        assert post(*second).json()["Code"] == "SignatureNonceUsed"
    finally:
        keyturn.stop()


# --------------------------------------------------------------------------- accounts


def test_policies_can_name_accounts(keyturn: KeyturnServer, redis_server: RedisServer) -> None:
    instance_id = "r-" + secrets.token_hex(7)
    with redis.Redis(port=redis_server.port, password=redis_server.password, protocol=2) as admin:
        for user in ("app", "billing"):
            admin.execute_command(
                "ACL", "SETUSER", user, "on", ">Kt-Initial-Pass9", "~*", "+@read", "+ping"
            )
    keyturn.add_instance(
        instance_id, [redis_server.url()], product=Product.ALIBABA_KVSTORE, region="cn-hangzhou"
    )
    resource = f"acs:kvstore:*:{TENANT}:instance/{instance_id}"
    key = make_key(
        keyturn,
        TENANT,
        {
            "Version": "1",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "kvstore:ResetAccountPassword",
                    "Resource": f"{resource}/account/app",
                }
            ],
        },
    )
    sdk = KvstoreSdk("tea", keyturn.endpoint, key_id=key[0], secret=key[1])
    password = new_password()
    sdk.call(
        "ResetAccountPassword", InstanceId=instance_id, AccountName="app", AccountPassword=password
    )
    assert can_login(redis_server.port, password, "app")
    refused = sdk_error(
        lambda: sdk.call(
            "ResetAccountPassword",
            InstanceId=instance_id,
            AccountName="billing",
            AccountPassword=new_password(),
        )
    )
    assert refused == ("Forbidden.RAM", 403)
    assert can_login(redis_server.port, "Kt-Initial-Pass9", "billing")

    # An allow on the instance with a deny on one account: every account but that one.
    key = make_key(
        keyturn,
        TENANT,
        {
            "Version": "1",
            "Statement": [
                {"Effect": "Allow", "Action": "kvstore:*", "Resource": resource},
                {
                    "Effect": "Deny",
                    "Action": "kvstore:ResetAccountPassword",
                    "Resource": f"{resource}/account/app",
                },
            ],
        },
    )
    sdk = KvstoreSdk("tea", keyturn.endpoint, key_id=key[0], secret=key[1])
    assert sdk_error(
        lambda: sdk.call(
            "ResetAccountPassword",
            InstanceId=instance_id,
            AccountName="app",
            AccountPassword=new_password(),
        )
    ) == ("Forbidden.RAM", 403)
    billing = new_password()
    sdk.call(
        "ResetAccountPassword",
        InstanceId=instance_id,
        AccountName="billing",
        AccountPassword=billing,
    )
    assert can_login(redis_server.port, billing, "billing")
    assert can_login(redis_server.port, password, "app")


def test_no_traceback_in_the_log(keyturn: KeyturnServer) -> None:
    assert "Traceback" not in keyturn.log()


# --------------------------------------------------------------------------- roles, task ids


def test_read_only_and_read_write_accounts_cannot_disrupt_other_clients(
    keyturn: KeyturnServer, redis_server: RedisServer
) -> None:
    instance_id = "r-" + secrets.token_hex(7)
    keyturn.add_instance(instance_id, [redis_server.admin_url()], product=Product.ALIBABA_KVSTORE)
    sdk = KvstoreSdk("tea", keyturn.endpoint)
    passwords = {}
    for name, privilege in (("reader", "RoleReadOnly"), ("writer", "RoleReadWrite")):
        passwords[name] = new_password()
        sdk.call(
            "CreateAccount",
            InstanceId=instance_id,
            AccountName=name,
            AccountPassword=passwords[name],
            AccountPrivilege=privilege,
        )
    for name in ("reader", "writer"):
        with redis.Redis(
            port=redis_server.port, username=name, password=passwords[name], protocol=2
        ) as client:
            client.get("some-key")
            client.client_setname("app")
            for command in (
                ("CLIENT", "KILL", "TYPE", "normal"),
                ("CLIENT", "PAUSE", "1000"),
                ("CLIENT", "LIST"),
                ("CONFIG", "GET", "*"),
                ("FLUSHALL",),
                ("ACL", "LIST"),
                ("SHUTDOWN", "NOSAVE"),
            ):
                with pytest.raises(redis.exceptions.NoPermissionError):
                    client.execute_command(*command)
            if name == "writer":
                client.set("some-key", "v")
            else:
                with pytest.raises(redis.exceptions.NoPermissionError):
                    client.set("some-key", "v")
    # keyturn's own admin connections survived all of that and still work.
    assert sdk.call("DescribeAccounts", InstanceId=instance_id)["Accounts"]


def test_task_ids_say_nothing_across_tenants(
    keyturn: KeyturnServer, redis_server_factory: Any
) -> None:
    from tests.support.keyturn_server import OTHER_KEY_ID, OTHER_KEY_SECRET, OTHER_TENANT

    servers = {TENANT: redis_server_factory(), OTHER_TENANT: redis_server_factory()}
    ids = {}
    for tenant, server in servers.items():
        ids[tenant] = "crs-" + secrets.token_hex(5)
        keyturn.add_instance(ids[tenant], [server.admin_url()], tenant=tenant)
    keys = {TENANT: (None, None), OTHER_TENANT: (OTHER_KEY_ID, OTHER_KEY_SECRET)}
    seen: list[int] = []
    for _ in range(3):
        for tenant in (TENANT, OTHER_TENANT):
            key_id, secret = keys[tenant]
            signing: dict[str, Any] = {}
            if key_id is not None:
                signing = {"key_id": key_id, "secret": secret}
            body = {"InstanceId": ids[tenant], "Password": new_password()}
            response = tc3_post(keyturn.endpoint, "ResetPassword", body, **signing)
            assert tencent_error(response) is None, response.text
            seen.append(int(response.json()["Response"]["TaskId"]))
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                info = tc3_post(
                    keyturn.endpoint, "DescribeTaskInfo", {"TaskId": seen[-1]}, **signing
                ).json()["Response"]
                if info.get("Status") in ("succeed", "failed"):
                    break
                time.sleep(0.05)
    assert all(0 < task_id < 2**53 for task_id in seen)
    gaps = {abs(b - a) for a, b in itertools.pairwise(seen)}
    assert not gaps & {1, 2, 3}, seen  # no sequence one tenant could count the other's by
