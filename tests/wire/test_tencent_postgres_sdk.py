"""TencentDB for PostgreSQL ResetAccountPassword end to end: the official
tencentcloud-sdk-python-postgres client against a real keyturn server resetting roles on a real
throwaway PostgreSQL 15 (run as the postgres OS user, log_statement=all)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from functools import partial
from typing import Any

import psycopg
import pytest
from psycopg import sql
from tencentcloud.postgres.v20170312 import models, postgres_client

from keyturn.core.model import Product
from tests.support.keyturn_server import KeyturnServer
from tests.support.logins import can_login_postgres
from tests.support.passwords import USED_PASSWORDS, leaked, new_password
from tests.support.sdk import code_of, postgres_sdk

pytestmark = pytest.mark.engine


def create_role(server, name: str, password: str, *options: str) -> None:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        extra = sql.SQL(" ").join(sql.SQL(o) for o in (options or ("LOGIN",)))
        # A verifier, so the test's own statement keeps the plaintext out of the server log.
        verifier = conn.pgconn.encrypt_password(
            password.encode(), name.encode(), b"scram-sha-256"
        ).decode()
        conn.execute(
            sql.SQL("CREATE ROLE {} PASSWORD {} {}").format(
                sql.Identifier(name), sql.Literal(verifier), extra
            )
        )


def reset(
    client: postgres_client.PostgresClient, instance_id: str, user: str, password: str
) -> str:
    request = models.ResetAccountPasswordRequest()
    request.DBInstanceId, request.UserName, request.Password = instance_id, user, password
    return str(client.ResetAccountPassword(request).RequestId)


@pytest.fixture
def pg(keyturn: KeyturnServer, postgres_server) -> Iterator[tuple[str, Any]]:
    instance_id = "postgres-" + secrets.token_hex(4)
    keyturn.add_instance(
        instance_id, [postgres_server.url()], product=Product.TENCENT_POSTGRES, name="orders-db"
    )
    yield instance_id, postgres_server
    # log_statement=all: every statement keyturn sent is in the log, none with a plaintext.
    log = postgres_server.log_text()
    assert "ALTER ROLE" in log or "CREATE ROLE" in log
    assert [p for p in USED_PASSWORDS if p in log] == []


def test_reset_account_password(keyturn: KeyturnServer, pg) -> None:
    instance_id, server = pg
    old = new_password()
    create_role(server, "appuser", old)
    new = new_password()
    assert reset(postgres_sdk(keyturn.endpoint), instance_id, "appuser", new)
    # Synchronous: by the time the call returned, the new password works and the old does not.
    assert can_login_postgres(server.port, "appuser", new)
    assert not can_login_postgres(server.port, "appuser", old)


@pytest.mark.parametrize("name", ['we"ird name', "per%cent_x", "back\\slash", "ünïcødé", "O'Brien"])
def test_role_names_are_quoted_not_injected(keyturn: KeyturnServer, pg, name: str) -> None:
    instance_id, server = pg
    create_role(server, name, new_password())
    new = new_password()
    reset(postgres_sdk(keyturn.endpoint), instance_id, name, new)
    assert can_login_postgres(server.port, name, new)


def test_error_codes(keyturn: KeyturnServer, pg) -> None:
    instance_id, server = pg
    client = postgres_sdk(keyturn.endpoint)
    old = new_password()
    create_role(server, "appuser", old)
    create_role(server, "nologin_user", new_password(), "NOLOGIN")
    create_role(server, "expired_user", new_password(), "LOGIN", "VALID UNTIL '2000-01-01'")
    good = new_password()
    cases = {
        ("appuser", "Sh0rt!"): "InvalidParameterValue.InvalidPasswordLengthError",
        ("appuser", "Passw0rd2024"): "InvalidParameterValue.InvalidPasswordValueError",
        ("appuser", "/Passw0rd!24"): "InvalidParameterValue.InvalidPasswordValueError",
        ("appuser", "Passw0rd!2024é"): "InvalidParameterValue.InvalidPasswordFormat",
        ("nobody", good): "InvalidParameterValue.AccountNotExistError",
        ('x" PASSWORD NULL; --', good): "InvalidParameterValue.AccountNotExistError",
        ("nologin_user", good): "FailedOperation.InvalidAccountStatus",
        ("expired_user", good): "FailedOperation.InvalidAccountStatus",
    }
    for (user, password), code in cases.items():
        assert code_of(partial(reset, client, instance_id, user, password)) == code, user
    assert code_of(lambda: reset(client, "postgres-00000000", "appuser", good)) == (
        "InvalidParameterValue.InstanceNotExist"
    )
    request = models.ResetAccountPasswordRequest()
    request.DBInstanceId, request.UserName = instance_id, "appuser"
    assert code_of(lambda: client.ResetAccountPassword(request)) == "MissingParameter"
    assert can_login_postgres(server.port, "appuser", old)  # nothing was applied


def test_admin_role_and_superusers_are_protected(keyturn: KeyturnServer, pg) -> None:
    """keyturn's own admin role (``postgres``) and any other superuser: refused with
    OperationDenied.AccountOperationDenied, nothing changed (the old passwords still log in)."""
    instance_id, server = pg
    client = postgres_sdk(keyturn.endpoint)
    other = new_password()
    create_role(server, "root2", other, "LOGIN", "SUPERUSER")
    for user in ("postgres", "root2"):
        code = code_of(partial(reset, client, instance_id, user, new_password()))
        assert code == "OperationDenied.AccountOperationDenied", user
    assert can_login_postgres(server.port, "postgres", server.password)
    assert can_login_postgres(server.port, "root2", other)


def test_admin_role_when_allowed(keyturn: KeyturnServer, postgres_server) -> None:
    """With ``allow_admin_reset`` keyturn resets its own admin role and keeps working."""
    instance_id = "postgres-" + secrets.token_hex(4)
    keyturn.add_instance(
        instance_id,
        [postgres_server.url()],
        product=Product.TENCENT_POSTGRES,
        allow_admin_reset=True,
    )
    client = postgres_sdk(keyturn.endpoint)
    new = new_password()
    reset(client, instance_id, "postgres", new)
    assert can_login_postgres(postgres_server.port, "postgres", new)
    assert not can_login_postgres(postgres_server.port, "postgres", postgres_server.password)
    newer = new_password()
    reset(client, instance_id, "postgres", newer)  # keyturn logs in with the new one
    assert can_login_postgres(postgres_server.port, "postgres", newer)


def test_unreachable_instance(keyturn: KeyturnServer, pg) -> None:
    instance_id, server = pg
    server.stop()
    code = code_of(
        lambda: reset(postgres_sdk(keyturn.endpoint), instance_id, "appuser", new_password())
    )
    assert code == "InvalidInstanceStatus"


def test_companion_reads(keyturn: KeyturnServer, pg) -> None:
    instance_id, server = pg
    client = postgres_sdk(keyturn.endpoint)
    create_role(server, "appuser", new_password())
    reset(client, instance_id, "appuser", new_password())

    accounts = models.DescribeAccountsRequest()
    accounts.DBInstanceId = instance_id
    names = {d.UserName for d in client.DescribeAccounts(accounts).Details}
    assert {"appuser", "postgres"} <= names

    listing = models.DescribeDBInstancesRequest()
    listing.Filters = [models.Filter()]
    listing.Filters[0].Name, listing.Filters[0].Values = "db-instance-id", [instance_id]
    found = client.DescribeDBInstances(listing)
    assert found.TotalCount == 1
    db = found.DBInstanceSet[0]
    assert (db.DBInstanceId, db.DBInstanceName) == (instance_id, "orders-db")
    assert db.DBInstanceNetInfo[0].Port == server.port

    attribute = models.DescribeDBInstanceAttributeRequest()
    attribute.DBInstanceId = instance_id
    assert client.DescribeDBInstanceAttribute(attribute).DBInstance.DBInstanceId == instance_id

    tasks = models.DescribeTasksRequest()
    tasks.DBInstanceId = instance_id
    task_set = client.DescribeTasks(tasks).TaskSet
    assert task_set and task_set[0].Status == "Success"


def test_no_plaintext_in_keyturn(keyturn: KeyturnServer) -> None:
    """Runs last: no password set above is in keyturn's log or data dir (the PostgreSQL logs
    are checked after each test, in the ``pg`` fixture)."""
    assert USED_PASSWORDS
    assert leaked(keyturn, USED_PASSWORDS) == []
