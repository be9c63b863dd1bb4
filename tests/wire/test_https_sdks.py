"""Every official SDK resets a real engine's password over HTTPS, trusting only the CA made by
``keyturn tls dev-cert`` (run as a user would, as a subprocess) for a ``keyturn serve
--tls-cert --tls-key`` server.

Clients and how each is given the CA: Tencent Cloud SDK (Redis, PostgreSQL, TDSQL)
``HttpProfile(protocol="https", certification=CA)``; Alibaba Tea SDK ``Config(protocol="https",
ca=CA)`` with both of its signatures; the legacy Alibaba core SDK ``AcsClient(verify=CA)`` with
``set_protocol_type("https")``; Huawei Cloud SDK ``HttpConfig.ssl_ca_cert = CA``. Without the CA
each SDK refuses the server, and plain HTTP does not reach it. tccli is not covered: it builds
its ``HttpProfile`` without ``certification``, so the SDK verifies against certifi's bundle only
and a private CA cannot be handed to it.
"""

from __future__ import annotations

import json
import socket
import ssl
import stat
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pymysql  # type: ignore[import-untyped]
import pytest
import redis
from alibabacloud_r_kvstore20150101 import models as kvstore_models
from alibabacloud_r_kvstore20150101.client import Client as TeaClient
from alibabacloud_tea_openapi import models as open_api_models
from aliyunsdkcore.client import AcsClient
from aliyunsdkr_kvstore.request.v20150101.ResetAccountPasswordRequest import (
    ResetAccountPasswordRequest,
)
from huaweicloudsdkdcs.v2 import DcsClient
from psycopg import sql
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.postgres.v20170312 import models as pg_models
from tencentcloud.postgres.v20170312 import postgres_client
from tencentcloud.redis.v20180412 import redis_client
from tencentcloud.tdmysql.v20211122 import models as td_models
from tencentcloud.tdmysql.v20211122 import tdmysql_client

from keyturn.core.model import Product
from tests.support.cli import keyturn_cli
from tests.support.huawei_sdk import reset_password
from tests.support.keyturn_server import (
    HW_AK,
    HW_PROJECT,
    HW_SK,
    KEY_ID,
    KEY_SECRET,
    KeyturnServer,
)
from tests.support.logins import can_login
from tests.support.mysql_server import MariaDBServer, native_hash, sql_string
from tests.support.passwords import USED_PASSWORDS, leaked, new_instance_id, new_password
from tests.support.postgres_server import PostgresServer
from tests.support.redis_server import RedisServer
from tests.support.sdk import reset, wait_task

pytestmark = pytest.mark.engine


class HttpsKeyturnServer(KeyturnServer):
    """``keyturn serve`` with ``KEYTURN_TLS_CERT``/``KEYTURN_TLS_KEY``; ready once
    ``https://.../healthz`` answers to a client that trusts ``ca`` alone."""

    def __init__(self, root: Path, tls_dir: Path) -> None:
        super().__init__(
            root,
            extra_env={
                "KEYTURN_TLS_CERT": str(tls_dir / "server.pem"),
                "KEYTURN_TLS_KEY": str(tls_dir / "server-key.pem"),
            },
        )
        self.ca = tls_dir / "ca.pem"

    def healthy(self) -> bool:
        answer = httpx.get(
            f"https://{self.endpoint}/healthz", timeout=0.5, verify=self.ca_context()
        )
        return answer.status_code == 200

    def ca_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tls")
    done = keyturn_cli(None, "tls", "dev-cert", "--dir", str(directory))
    assert done.returncode == 0, done.stderr
    assert "--tls-cert" in done.stdout and "ca.pem" in done.stdout
    for name in ("ca-key.pem", "server-key.pem"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
    return directory


@pytest.fixture(scope="module")
def keyturn(
    tmp_path_factory: pytest.TempPathFactory, tls_dir: Path
) -> Iterator[HttpsKeyturnServer]:
    server = HttpsKeyturnServer(tmp_path_factory.mktemp("keyturn-https"), tls_dir)
    server.start()
    yield server
    if server.process is not None:
        server.stop()


def add_user(server: RedisServer, name: str, password: str) -> None:
    """A data account (every command but the dangerous ones: not a superuser)."""
    client = redis.Redis(port=server.port, password=server.password, protocol=2, driver_info=None)
    try:
        rules = ("~*", "&*", "+@all", "-@dangerous")
        client.execute_command("ACL", "SETUSER", name, "on", f">{password}", *rules)
    finally:
        client.close()


# --------------------------------------------------------------------------- the server's TLS


def test_serves_tls_1_2_or_newer_with_the_dev_certificate(keyturn: HttpsKeyturnServer) -> None:
    context = keyturn.ca_context()
    with (
        socket.create_connection(("127.0.0.1", keyturn.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    # A TLS 1.1 client (OpenSSL allows it at security level 0) is refused by the server.
    old = ssl.create_default_context(cafile=str(keyturn.ca))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1_1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("ALL:@SECLEVEL=0")
    with (
        pytest.raises(ssl.SSLError) as caught,
        socket.create_connection(("127.0.0.1", keyturn.port), timeout=5) as raw,
        old.wrap_socket(raw, server_hostname="127.0.0.1"),
    ):
        pass
    # The server hangs up on the hello (or alerts), rather than the client refusing to send it.
    assert isinstance(caught.value, ssl.SSLEOFError) or "PROTOCOL_VERSION" in str(caught.value)
    # Plain HTTP does not reach the API, and a client without the CA refuses the server.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{keyturn.endpoint}/healthz", timeout=2)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"https://{keyturn.endpoint}/healthz", timeout=2)
    assert "serving on https://" in keyturn.log()


# --------------------------------------------------------------------------- Tencent


def tencent_profile(keyturn: HttpsKeyturnServer, ca: bool = True) -> ClientProfile:
    http = HttpProfile(protocol="https", endpoint=keyturn.endpoint)
    if ca:
        http.certification = str(keyturn.ca)
    return ClientProfile(httpProfile=http)


def test_tencent_redis_sdk(keyturn: HttpsKeyturnServer, redis_server: RedisServer) -> None:
    instance_id = new_instance_id()
    keyturn.add_instance(instance_id, [redis_server.admin_url()])
    cred = credential.Credential(KEY_ID, KEY_SECRET)
    client = redis_client.RedisClient(cred, "ap-guangzhou", tencent_profile(keyturn))
    password = new_password()
    info = wait_task(client, reset(client, instance_id, Password=password, NoAuth=False))
    assert info.Status == "succeed"
    assert can_login(redis_server.port, password, "default")
    # The same SDK without the CA: certificate verification fails, nothing is sent.
    untrusting = redis_client.RedisClient(cred, "ap-guangzhou", tencent_profile(keyturn, ca=False))
    with pytest.raises(TencentCloudSDKException) as caught:
        reset(untrusting, instance_id, Password=new_password(), NoAuth=False)
    assert caught.value.get_code() == "ClientNetworkError"
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value.get_message())
    assert can_login(redis_server.port, password, "default")


def test_tencent_postgres_sdk(keyturn: HttpsKeyturnServer, postgres_server: PostgresServer) -> None:
    instance_id = "postgres-" + uuid.uuid4().hex[:8]
    keyturn.add_instance(
        instance_id, [postgres_server.url()], product=Product.TENCENT_POSTGRES, name="https"
    )
    with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
        verifier = conn.pgconn.encrypt_password(new_password().encode(), b"app", b"scram-sha-256")
        conn.execute(
            sql.SQL("CREATE ROLE app LOGIN PASSWORD {}").format(sql.Literal(verifier.decode()))
        )
    client = postgres_client.PostgresClient(
        credential.Credential(KEY_ID, KEY_SECRET), "ap-guangzhou", tencent_profile(keyturn)
    )
    password = new_password()
    request = pg_models.ResetAccountPasswordRequest()
    request.DBInstanceId, request.UserName, request.Password = instance_id, "app", password
    assert client.ResetAccountPassword(request).RequestId
    with psycopg.connect(
        host="127.0.0.1",
        port=postgres_server.port,
        user="app",
        password=password,
        dbname="postgres",
    ):
        pass


def test_tencent_tdmysql_sdk(keyturn: HttpsKeyturnServer, mariadb_server: MariaDBServer) -> None:
    instance_id = "tdsql3-" + uuid.uuid4().hex[:8]
    keyturn.add_instance(
        instance_id, [mariadb_server.url()], product=Product.TENCENT_TDMYSQL, name="https"
    )
    mariadb_server.socket_sql(
        f"CREATE USER 'app'@'%' IDENTIFIED BY PASSWORD {sql_string(native_hash(new_password()))};"
    )
    client = tdmysql_client.TdmysqlClient(
        credential.Credential(KEY_ID, KEY_SECRET), "ap-guangzhou", tencent_profile(keyturn)
    )
    password = new_password()
    request = td_models.ResetUsersPasswordRequest()
    request.InstanceId = instance_id
    user = td_models.ResetUserPasswordInfo()
    user.UserName, user.Host, user.Password = "app", "%", password
    request.Users = [user]
    assert client.ResetUsersPassword(request).FlowId > 0
    pymysql.connect(
        host="127.0.0.1",
        port=mariadb_server.port,
        user="app",
        password=password,
        connect_timeout=5,
        ssl_disabled=True,
    ).close()


# --------------------------------------------------------------------------- Alibaba


@pytest.mark.parametrize("signature", [None, "v2"])
def test_alibaba_tea_sdk(
    keyturn: HttpsKeyturnServer, redis_server: RedisServer, signature: str | None
) -> None:
    instance_id = "r-" + uuid.uuid4().hex[:12]
    keyturn.add_instance(instance_id, [redis_server.admin_url()], product=Product.ALIBABA_KVSTORE)
    add_user(redis_server, "appuser", new_password())
    config = open_api_models.Config(
        access_key_id=KEY_ID,
        access_key_secret=KEY_SECRET,
        region_id="cn-hangzhou",
        endpoint=keyturn.endpoint,
        protocol="https",
        ca=str(keyturn.ca),
        signature_algorithm=signature,
    )
    password = new_password()
    TeaClient(config).reset_account_password(
        kvstore_models.ResetAccountPasswordRequest(
            instance_id=instance_id, account_name="appuser", account_password=password
        )
    )
    assert can_login(redis_server.port, password, "appuser")


# The legacy SDK vendors an old urllib3 that calls deprecated ssl APIs (PROTOCOL_TLS,
# match_hostname): its warnings, not keyturn's.
@pytest.mark.filterwarnings("ignore:ssl.PROTOCOL_TLS is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings(r"ignore:ssl\.match_hostname\(\) is deprecated:DeprecationWarning")
def test_alibaba_legacy_sdk(keyturn: HttpsKeyturnServer, redis_server: RedisServer) -> None:
    instance_id = "r-" + uuid.uuid4().hex[:12]
    keyturn.add_instance(instance_id, [redis_server.admin_url()], product=Product.ALIBABA_KVSTORE)
    add_user(redis_server, "appuser", new_password())
    client = AcsClient(KEY_ID, KEY_SECRET, "cn-hangzhou", verify=str(keyturn.ca))
    request = ResetAccountPasswordRequest()
    request.set_endpoint(keyturn.endpoint)
    request.set_protocol_type("https")
    password = new_password()
    request.set_InstanceId(instance_id)
    request.set_AccountName("appuser")
    request.set_AccountPassword(password)
    answer: dict[str, Any] = json.loads(client.do_action_with_exception(request))
    assert answer["RequestId"]
    assert can_login(redis_server.port, password, "appuser")


# --------------------------------------------------------------------------- Huawei


def test_huawei_dcs_sdk(keyturn: HttpsKeyturnServer, redis_server: RedisServer) -> None:
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.http.http_config import HttpConfig

    instance_id = str(uuid.uuid4())
    keyturn.add_instance(
        instance_id, [redis_server.admin_url()], product=Product.HUAWEI_DCS, tenant=HW_PROJECT
    )
    config = HttpConfig.get_default_config()
    config.ssl_ca_cert = str(keyturn.ca)
    client = (
        DcsClient.new_builder()
        .with_credentials(BasicCredentials(HW_AK, HW_SK, HW_PROJECT))
        .with_http_config(config)
        .with_endpoints([f"https://{keyturn.endpoint}"])
        .build()
    )
    password = new_password()
    answer = reset_password(client, instance_id, new_password=password, no_password_access=False)
    assert answer.code == "1" and answer.message == "success"
    assert can_login(redis_server.port, password, "default")


# --------------------------------------------------------------------------- hygiene


def test_no_password_leaked(keyturn: HttpsKeyturnServer) -> None:
    assert "Traceback" not in keyturn.log()
    assert leaked(keyturn, USED_PASSWORDS) == []
