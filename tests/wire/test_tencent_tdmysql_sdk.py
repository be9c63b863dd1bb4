"""TDSQL MySQL user@host password resets end to end: the official
tencentcloud-sdk-python-tdmysql client (batch ResetUsersPassword) and CommonClient (the seed's
flat ResetUserPassword) against a real keyturn server and a throwaway MariaDB 10.11 with the
general and binary logs on."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding
from tencentcloud.tdmysql.v20211122 import models

from keyturn.core.model import Product
from tests.support.keyturn_server import KEY_ID, KEY_SECRET, KeyturnServer
from tests.support.logins import can_login_mysql
from tests.support.mysql_server import native_hash, sql_string
from tests.support.passwords import USED_PASSWORDS, leaked, new_password
from tests.support.sdk import code_of, tdmysql_common, tdmysql_sdk, users_request

pytestmark = pytest.mark.engine


def create_user(server, user: str, host: str, password: str) -> None:
    # A hash, so the test's own statement keeps the plaintext out of the server's logs.
    server.socket_sql(
        f"CREATE USER {sql_string(user)}@{sql_string(host)} IDENTIFIED BY PASSWORD "
        f"{sql_string(native_hash(password))};"
    )


@pytest.fixture
def db(keyturn: KeyturnServer, mariadb_server) -> Iterator[tuple[str, Any]]:
    instance_id = "tdsql3-" + secrets.token_hex(4)
    keyturn.add_instance(
        instance_id, [mariadb_server.url()], product=Product.TENCENT_TDMYSQL, name="orders"
    )
    yield instance_id, mariadb_server
    logs = mariadb_server.general_log_text() + mariadb_server.binlog_text()
    assert "ALTER USER" in logs
    assert [p for p in USED_PASSWORDS if p in logs] == []


def test_batch_reset_users_password(keyturn: KeyturnServer, db) -> None:
    instance_id, server = db
    old_a, old_b = new_password(), new_password()
    create_user(server, "app_a", "%", old_a)
    create_user(server, "app_b", "127.0.0.1", old_b)
    client = tdmysql_sdk(keyturn.endpoint)
    new_a, new_b = new_password(), new_password()
    response = client.ResetUsersPassword(
        users_request(instance_id, ("app_a", "%", new_a), ("app_b", "127.0.0.1", new_b))
    )
    assert isinstance(response.FlowId, int) and response.FlowId > 0
    assert can_login_mysql(server.port, "app_a", new_a) and not can_login_mysql(
        server.port, "app_a", old_a
    )
    assert can_login_mysql(server.port, "app_b", new_b) and not can_login_mysql(
        server.port, "app_b", old_b
    )
    flow = models.DescribeFlowRequest()
    flow.FlowId = response.FlowId
    assert client.DescribeFlow(flow).Status == "success"


def test_flat_reset_user_password_and_encrypted(keyturn: KeyturnServer, db) -> None:
    instance_id, server = db
    create_user(server, "flat", "%", new_password())
    cc = tdmysql_common(keyturn.endpoint)
    new = new_password()
    answer = cc.call_json(
        "ResetUserPassword",
        {"InstanceId": instance_id, "UserName": "flat", "Host": "%", "Password": new},
    )
    assert answer["Response"]["RequestId"] and "Error" not in answer["Response"]
    assert can_login_mysql(server.port, "flat", new)

    key = cc.call_json("GetPublicKey", {})["Response"]["PublicKey"]
    public = serialization.load_der_public_key(base64.b64decode(key))
    secret = new_password()
    ciphertext = base64.b64encode(public.encrypt(secret.encode(), padding.PKCS1v15())).decode()  # type: ignore[union-attr]
    request = models.ResetUsersPasswordRequest()
    request.InstanceId = instance_id
    info = models.ResetUserPasswordInfo()
    info.UserName, info.Host, info.EncryptedPassword = "flat", "%", ciphertext
    request.Users = [info]
    tdmysql_sdk(keyturn.endpoint).ResetUsersPassword(request)
    assert can_login_mysql(server.port, "flat", secret)


@pytest.mark.parametrize("name", ["o'brien", 'dq"uote', "back\\slash", "sp ace", "pct%_x", "ünï"])
def test_odd_user_names(keyturn: KeyturnServer, db, name: str) -> None:
    instance_id, server = db
    create_user(server, name, "%", new_password())
    new = new_password()
    tdmysql_sdk(keyturn.endpoint).ResetUsersPassword(users_request(instance_id, (name, "%", new)))
    assert can_login_mysql(server.port, name, new)


def test_error_codes_and_all_or_nothing(keyturn: KeyturnServer, db) -> None:
    instance_id, server = db
    client = tdmysql_sdk(keyturn.endpoint)
    old = new_password()
    create_user(server, "keep", "%", old)
    create_user(server, "dba", "%", new_password())
    server.socket_sql("GRANT SUPER ON *.* TO 'dba'@'%';")
    good = new_password()
    cases = [
        (
            users_request(instance_id, ("root", "127.0.0.1", good)),
            "OperationDenied.ResetUserPasswordError",
        ),
        # A superuser by its grants (SUPER on *.*), not by its name; the batch changes nothing.
        (
            users_request(instance_id, ("keep", "%", good), ("dba", "%", good)),
            "OperationDenied.ResetUserPasswordError",
        ),
        # One account alone meets the same checks in its own reset (no batch pre-check).
        (
            users_request(instance_id, ("dba", "%", good)),
            "OperationDenied.ResetUserPasswordError",
        ),
        (users_request(instance_id, ("nobody", "%", good)), "FailedOperation.QueryUserError"),
        (
            users_request(instance_id, ("x'@'%' IDENTIFIED BY 'p';#", "%", good)),
            "FailedOperation.QueryUserError",
        ),
        (
            users_request(instance_id, ("keep", "%", "short")),
            "InvalidParameterValue.CheckPasswdError",
        ),
        (
            users_request(instance_id, ("keep", "%", "onlyletters")),
            "InvalidParameterValue.CheckPasswdError",
        ),
        # One bad entry: nothing is applied, not even the good one before it.
        (
            users_request(instance_id, ("keep", "%", good), ("nobody", "%", good)),
            "FailedOperation.QueryUserError",
        ),
        (
            users_request("tdsql3-00000000", ("keep", "%", good)),
            "ResourceNotFound.InstanceNotFound",
        ),
    ]
    for request, code in cases:
        assert code_of(partial(client.ResetUsersPassword, request)) == code
    bad = models.ResetUsersPasswordRequest()
    bad.InstanceId = instance_id
    info = models.ResetUserPasswordInfo()
    info.UserName, info.Host, info.EncryptedPassword = "keep", "%", "bm90IGEgY2lwaGVydGV4dA=="
    bad.Users = [info]
    assert code_of(lambda: client.ResetUsersPassword(bad)) == (
        "InvalidParameterValue.InvalidParameterValueError"
    )
    assert can_login_mysql(server.port, "keep", old)


def test_companion_reads(keyturn: KeyturnServer, db) -> None:
    instance_id, server = db
    create_user(server, "listed", "10.0.0.%", new_password())
    client = tdmysql_sdk(keyturn.endpoint)
    users = models.DescribeUsersRequest()
    users.InstanceId = instance_id
    found = {(u.UserName, u.Host) for u in client.DescribeUsers(users).Users}
    assert ("listed", "10.0.0.%") in found
    listing = client.DescribeDBInstances(models.DescribeDBInstancesRequest())
    assert instance_id in {i.InstanceId for i in listing.Instances}


INTL_SCRIPT = """
import json, sys
from tencentcloud.common import credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.tdmysql.v20211122 import models, tdmysql_client
endpoint, key_id, secret, instance_id, user, password = sys.argv[1:]
profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=endpoint))
cred = credential.Credential(key_id, secret)
client = tdmysql_client.TdmysqlClient(cred, "ap-singapore", profile)
request = models.ResetUsersPasswordRequest()
request.InstanceId = instance_id
info = models.ResetUserPasswordInfo()
info.UserName, info.Host, info.Password = user, "%", password
request.Users = [info]
response = client.ResetUsersPassword(request)
import tencentcloud
print(json.dumps({"flow": response.FlowId, "sdk": tencentcloud.__file__}))
"""


def test_intl_en_sdk(keyturn: KeyturnServer, db) -> None:
    """The intl-en SDK (tencentcloud-sdk-python-intl-en) shares the ``tencentcloud`` namespace
    with the CN SDK, so the test command installs it apart (.venv/intl-sdk) and this test runs
    it in a child process with that directory first on the path."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    intl = Path(__file__).resolve().parents[2] / ".venv" / "intl-sdk"
    assert (intl / "tencentcloud").is_dir(), "scripts/test installs the intl-en SDK here"
    instance_id, server = db
    create_user(server, "intl_user", "%", new_password())
    new = new_password()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            INTL_SCRIPT,
            keyturn.endpoint,
            KEY_ID,
            KEY_SECRET,
            instance_id,
            "intl_user",
            new,
        ],
        env={**os.environ, "PYTHONPATH": str(intl)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["flow"] > 0 and str(intl) in result["sdk"]
    assert can_login_mysql(server.port, "intl_user", new)


def test_no_plaintext_in_keyturn(keyturn: KeyturnServer) -> None:
    assert USED_PASSWORDS
    assert leaked(keyturn, USED_PASSWORDS) == []
