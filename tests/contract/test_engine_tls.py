"""Engines over TLS with the CA named in the node URL: a redis-server listening on ``tls-port``
with a certificate from ``keyturn tls dev-cert``'s CA, a PostgreSQL 15 with ``ssl = on`` and a
MariaDB 10.11 with ``ssl_cert``/``ssl_key``/``ssl_ca``.

Each test resets a password through the engine adapter over ``rediss://...?ssl_ca_certs=CA``
(``sslmode=verify-full&sslrootcert=CA``, ``ssl-mode=VERIFY_IDENTITY&ssl-ca=CA``) and checks
from outside, over TLS too, that the new password logs in and the old one does not. A
certificate from another CA, a missing client certificate (``tls-auth-clients yes``) or a bad
option value is refused, and no error message carries the password.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from redis.asyncio import Redis

from keyturn.cli.devcert import DevCerts, make_dev_certs
from keyturn.core.errors import DomainError, EngineRejected, EngineUnavailable
from keyturn.core.model import EngineKind, Node, parse_node_url
from keyturn.core.secrets import Secret
from keyturn.engines.mysql import MySQLEngine
from keyturn.engines.postgres import PostgresEngine
from keyturn.engines.redis import RedisEngine
from keyturn.engines.redis_login import fresh_login
from tests.support.fixtures import require_binary
from tests.support.logins import can_login, mysql_login, postgres_login
from tests.support.mysql_server import MariaDBServer, native_hash, sql_string
from tests.support.postgres_server import PostgresServer
from tests.support.redis_server import RedisServer, RedisServerError, RedisTls, redis_server_binary

pytestmark = pytest.mark.engine

_PG_SSL = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
_MY_CIPHER = "SHOW STATUS LIKE 'Ssl_cipher'"

TIMEOUT = 3.0


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    return make_dev_certs(tmp_path_factory.mktemp("tls"), ["127.0.0.1", "localhost"])


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    """A second, unrelated CA: its certificate must not vouch for the servers."""
    return make_dev_certs(tmp_path_factory.mktemp("other-tls"), ["127.0.0.1"])


def _tls_redis(certs: DevCerts, auth_clients: str = "no") -> Iterator[RedisServer]:
    binary = require_binary("redis-server", redis_server_binary())
    tls = RedisTls(cert=certs.cert, key=certs.key, ca=certs.ca_cert, auth_clients=auth_clients)
    server = RedisServer(password=RedisServer.new_password(), binary=binary, tls=tls)
    try:
        server.start()
    except RedisServerError as exc:
        pytest.fail(f"could not start redis-server with TLS: {exc}", pytrace=False)
    yield server
    server.close()


@pytest.fixture
def tls_redis(certs: DevCerts) -> Iterator[RedisServer]:
    yield from _tls_redis(certs)


@pytest.fixture
def mtls_redis(certs: DevCerts) -> Iterator[RedisServer]:
    yield from _tls_redis(certs, auth_clients="yes")


def redis_node(url: str) -> Node:
    return Node(
        instance_id="crs-tls00001", ordinal=0, address=parse_node_url(url, EngineKind.REDIS)
    )


def tls_login(server: RedisServer, ca: Path, user: str, password: str) -> bool:
    """A fresh redis-py login over TLS, outside keyturn."""
    return can_login(server.tls_port or 0, password, user, ssl=True, ssl_ca_certs=str(ca))


async def test_redis_reset_and_verify_over_rediss_with_the_ca(
    tls_redis: RedisServer, certs: DevCerts, redis_engine: RedisEngine
) -> None:
    old, new = "Old-" + RedisServer.new_password(), "Tls-" + RedisServer.new_password()
    setup = Redis(port=tls_redis.port, password=tls_redis.password, protocol=2, driver_info=None)
    await setup.execute_command("ACL", "SETUSER", "app", "on", f">{old}", "~*", "+@all")
    await setup.aclose()
    url = tls_redis.tls_url()
    assert url.startswith("rediss://") and "ssl_ca_certs=" in url
    node = redis_node(url)
    assert node.address.tls and node.address.port == tls_redis.tls_port
    info = await redis_engine.probe(node, "app")
    assert info.version.startswith("7")
    snapshot = await redis_engine.snapshot(node, "app")
    await redis_engine.set_password(node, "app", Secret(new))
    await redis_engine.verify(node, "app", Secret(new))
    assert tls_login(tls_redis, certs.ca_cert, "app", new)
    assert not tls_login(tls_redis, certs.ca_cert, "app", old)
    await redis_engine.restore(node, snapshot)
    await redis_engine.verify(node, "app", Secret(old))
    assert tls_login(tls_redis, certs.ca_cert, "app", old)


async def test_redis_certificate_from_another_ca_is_refused(
    tls_redis: RedisServer, other_ca: DevCerts, redis_engine: RedisEngine
) -> None:
    url = tls_redis.tls_url().split("?")[0] + f"?ssl_ca_certs={other_ca.ca_cert}"
    with pytest.raises(EngineUnavailable) as caught:
        await redis_engine.probe(redis_node(url), "default")
    assert str(tls_redis.password) not in str(caught.value)
    # The fresh login of a verification checks the certificate too.
    with pytest.raises(DomainError) as failed:
        await fresh_login(
            redis_node(url).address,
            "default",
            Secret(tls_redis.password or ""),
            acl=True,
            timeout=TIMEOUT,
        )
    assert str(tls_redis.password) not in str(failed.value)
    await fresh_login(
        redis_node(tls_redis.tls_url()).address,
        "default",
        Secret(tls_redis.password or ""),
        acl=True,
        timeout=TIMEOUT,
    )
    # Without any CA option the system's CAs are used: a private CA is not among them.
    with pytest.raises(EngineUnavailable):
        await redis_engine.probe(redis_node(tls_redis.tls_url().split("?")[0]), "default")


async def test_redis_cert_reqs_none_encrypts_without_verifying(
    tls_redis: RedisServer, redis_engine: RedisEngine
) -> None:
    url = tls_redis.tls_url().split("?")[0] + "?ssl_cert_reqs=none"
    node = redis_node(url)
    await redis_engine.probe(node, "default")
    await redis_engine.verify(node, "default", Secret(tls_redis.password or ""))


async def test_redis_bad_tls_option_is_refused(
    tls_redis: RedisServer, redis_engine: RedisEngine
) -> None:
    for query in ("ssl_cert_reqs=sometimes", "ssl_check_hostname=maybe"):
        url = tls_redis.tls_url().split("?")[0] + "?" + query
        with pytest.raises(EngineRejected) as caught:
            await redis_engine.probe(redis_node(url), "default")
        assert str(tls_redis.password) not in str(caught.value)


async def test_redis_client_certificate(
    mtls_redis: RedisServer, certs: DevCerts, redis_engine: RedisEngine
) -> None:
    # The dev certificate allows client authentication too, so it serves as the client's.
    base = mtls_redis.tls_url()
    with pytest.raises(EngineUnavailable):
        await redis_engine.probe(redis_node(base), "default")
    with_cert = f"{base}&ssl_certfile={certs.cert}&ssl_keyfile={certs.key}"
    node = redis_node(with_cert)
    await redis_engine.probe(node, "default")
    await redis_engine.verify(node, "default", Secret(mtls_redis.password or ""))


# --------------------------------------------------------------------------- PostgreSQL


def _enable_ssl(server: PostgresServer, certs: DevCerts) -> None:
    """Copy the pair where the postgres OS user owns it (0600) and turn ``ssl`` on."""
    target = server.dir / "tls"
    target.mkdir(exist_ok=True)
    cert, key = target / "server.pem", target / "server-key.pem"
    shutil.copyfile(certs.cert, cert)
    shutil.copyfile(certs.key, key)
    key.chmod(0o600)
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        for path in (target, cert, key):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    with psycopg.connect(server.url(), autocommit=True, connect_timeout=5) as conn:
        for name, value in (("ssl_cert_file", str(cert)), ("ssl_key_file", str(key))):
            conn.execute(
                sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value))
            )
        conn.execute("ALTER SYSTEM SET ssl = on")
        conn.execute("SELECT pg_reload_conf()")


def _pg_login(server: PostgresServer, ca: Path, user: str, password: str) -> bool:
    """Whether a fresh login verified against ``ca`` succeeds, and over TLS."""
    row = postgres_login(
        server.port, user, password, _PG_SSL, sslmode="verify-full", sslrootcert=str(ca)
    )
    return row is not None and bool(row[0])


async def test_postgres_reset_over_verify_full_with_the_ca(
    postgres_server: PostgresServer, certs: DevCerts, other_ca: DevCerts
) -> None:
    _enable_ssl(postgres_server, certs)
    with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
        verifier = conn.pgconn.encrypt_password(b"Old-Passw0rd-1", b"app", b"scram-sha-256")
        conn.execute(
            sql.SQL("CREATE ROLE app LOGIN PASSWORD {}").format(sql.Literal(verifier.decode()))
        )
    query = f"?sslmode=verify-full&sslrootcert={certs.ca_cert}"
    address = parse_node_url(postgres_server.url() + query, EngineKind.POSTGRES)
    node = Node(instance_id="postgres-tls0001", ordinal=0, address=address)
    engine = PostgresEngine(timeout=TIMEOUT)
    try:
        await engine.probe(node, "app")
        new = "Tls-" + PostgresServer.new_password() + "a1"
        await engine.set_password(node, "app", Secret(new))
        await engine.verify(node, "app", Secret(new))
        assert _pg_login(postgres_server, certs.ca_cert, "app", new)  # over TLS, verified
        assert not _pg_login(postgres_server, certs.ca_cert, "app", "Old-Passw0rd-1")
        wrong = parse_node_url(
            postgres_server.url() + f"?sslmode=verify-full&sslrootcert={other_ca.ca_cert}",
            EngineKind.POSTGRES,
        )
        with pytest.raises(DomainError) as caught:
            await engine.probe(Node(instance_id="postgres-tls0001", ordinal=1, address=wrong))
        assert postgres_server.password not in str(caught.value)
    finally:
        await engine.close()


# --------------------------------------------------------------------------- MariaDB


def _mariadb_tls(server: MariaDBServer, certs: DevCerts) -> None:
    """Give the server the dev pair (readable by the mysql OS user) and restart it."""
    target = server.dir / "tls"
    target.mkdir(exist_ok=True)
    files = {"ssl_cert": certs.cert, "ssl_key": certs.key, "ssl_ca": certs.ca_cert}
    lines = []
    for name, source in files.items():
        copy = target / source.name
        shutil.copyfile(source, copy)
        copy.chmod(0o600)
        lines.append(f"{name}={copy}")
    if os.geteuid() == 0:
        entry = pwd.getpwnam("mysql")
        for path in (target, *target.iterdir()):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    with (server.dir / "my.cnf").open("a") as conf:
        conf.write("\n".join(lines) + "\n")
    server.restart()


def _mysql_login(server: MariaDBServer, ca: Path, user: str, password: str) -> str | None:
    """The TLS cipher of a fresh verified login, None if the password is refused."""
    row = mysql_login(
        server.port, user, password, _MY_CIPHER, ssl_ca=str(ca), ssl_verify_identity=True
    )
    return None if row is None else str(row[1])


async def test_mariadb_reset_over_verify_identity_with_the_ca(
    mariadb_server: MariaDBServer, certs: DevCerts, other_ca: DevCerts
) -> None:
    _mariadb_tls(mariadb_server, certs)
    old = "Old-Passw0rd-1"
    # REQUIRE SSL: keyturn's verification login can only pass over TLS.
    mariadb_server.socket_sql(
        f"CREATE USER 'app'@'%' IDENTIFIED BY PASSWORD {sql_string(native_hash(old))} REQUIRE SSL;"
    )
    query = f"?ssl-mode=VERIFY_IDENTITY&ssl-ca={certs.ca_cert}"
    address = parse_node_url(mariadb_server.url() + query, EngineKind.MYSQL)
    node = Node(instance_id="tdsql3-tls00001", ordinal=0, address=address)
    engine = MySQLEngine(timeout=TIMEOUT)
    try:
        await engine.probe(node, "app@%")
        new = "Tls-" + MariaDBServer.new_password() + "a1"
        await engine.set_password(node, "app@%", Secret(new))
        await engine.verify(node, "app@%", Secret(new))
        assert _mysql_login(mariadb_server, certs.ca_cert, "app", new)  # a cipher: TLS
        assert _mysql_login(mariadb_server, certs.ca_cert, "app", old) is None
        wrong = parse_node_url(
            mariadb_server.url() + f"?ssl-mode=VERIFY_CA&ssl-ca={other_ca.ca_cert}",
            EngineKind.MYSQL,
        )
        with pytest.raises(DomainError) as caught:
            await engine.probe(Node(instance_id="tdsql3-tls00001", ordinal=1, address=wrong))
        assert mariadb_server.password not in str(caught.value)
    finally:
        await engine.close()
        # aiomysql closes the transport of a connection whose TLS handshake failed with
        # call_soon: let the loop run that before the test's loop is closed.
        await asyncio.sleep(0.1)
