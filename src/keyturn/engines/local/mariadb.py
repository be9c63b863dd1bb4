"""A throwaway MariaDB server: ``mariadb-install-db`` (root authenticated by password, no test
database), a ``my.cnf`` of its own (127.0.0.1 on a free port, a socket in its directory, a small
InnoDB, no performance schema), ``mariadbd`` as a child process, then over the socket: root's
random password on ``root@localhost`` and ``root@127.0.0.1`` (sent as a ``mysql_native_password``
hash computed here, so no plaintext reaches a log), the other root and anonymous rows dropped,
and an account ``app@'%'`` to reset. As root, mariadbd drops to the ``mysql`` OS user and the
files live in a private directory it owns.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
from pathlib import Path
from typing import Final
from urllib.parse import quote

from keyturn.core.secrets import Secret
from keyturn.engines.local.process import (
    LocalEngine,
    LocalEngineError,
    accepts,
    chown,
    free_port,
    os_user,
    private_dir,
    run,
    stop_process,
    wait_for,
)

INSTALL_DB: Final = "/usr/bin/mariadb-install-db"
MARIADBD: Final = "/usr/sbin/mariadbd"
ACCOUNT: Final = "app"
ACCOUNT_HOST: Final = "%"


def mariadb_installed() -> bool:
    return all(os.access(b, os.X_OK) for b in (INSTALL_DB, MARIADBD))


def native_hash(password: str) -> str:
    """MariaDB's ``mysql_native_password`` hash of ``password``."""
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


def start_mariadb(link: Path) -> LocalEngine:
    """Install and start a server whose files ``link`` (in the sandbox dir, made here) points at."""
    # PyMySQL is imported here and in ``_secure``: ``keyturn serve`` loads this module with the
    # command line, and the driver would cost a server that never runs a sandbox ~8 MB.
    import pymysql  # type: ignore[import-untyped]

    if not mariadb_installed():
        raise LocalEngineError("MariaDB is not installed")
    user = os_user("mysql")
    directory = private_dir(link, user)
    data, log, sock = directory / "data", directory / "error.log", directory / "mysqld.sock"
    run(
        [
            INSTALL_DB,
            "--no-defaults",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            f"--datadir={data}",
            *([f"--user={user}"] if user else []),
        ],
        "mariadb-install-db",
    )
    port = free_port()
    settings = {
        **({"user": user} if user else {}),
        "datadir": str(data),
        "port": str(port),
        "bind-address": "127.0.0.1",
        "skip-name-resolve": "1",
        "socket": str(sock),
        "pid-file": str(directory / "mariadbd.pid"),
        "log-error": str(log),
        "innodb_buffer_pool_size": "16M",
        "innodb_log_file_size": "8M",
        "innodb_flush_log_at_trx_commit": "0",
        "performance_schema": "OFF",
        "max_connections": "50",
    }
    conf = directory / "my.cnf"
    conf.write_text("[mariadbd]\n" + "".join(f"{k}={v}\n" for k, v in settings.items()))
    chown(conf, user)
    process = subprocess.Popen(
        [MARIADBD, f"--defaults-file={conf}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    password, account = Secret(secrets.token_hex(16)), Secret(secrets.token_hex(12))
    try:
        wait_for(
            lambda: sock.exists() and accepts(port),
            "mariadbd",
            timeout=60,
            alive=lambda: process.poll() is None,
            log=log,
        )
        _secure(sock, password, account)
    except pymysql.Error as exc:
        stop_process(process)
        raise LocalEngineError(f"setting up MariaDB failed: {type(exc).__name__}") from None
    except BaseException:
        stop_process(process)
        raise
    admin = f"mysql://root:{quote(password.reveal(), safe='')}@127.0.0.1:{port}"
    return LocalEngine(
        kind="mariadb",
        port=port,
        dir=directory,
        admin_url=Secret(admin),
        accounts={ACCOUNT: account},
        stop=lambda: stop_process(process, timeout=30),
    )


def _secure(sock: Path, password: Secret, account: Secret) -> None:
    """Root's password, no other root or anonymous rows, and the account to reset."""
    import pymysql

    root, app = native_hash(password.reveal()), native_hash(account.reveal())
    statements = [
        "SET sql_log_bin=0",
        "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING %s",
        "CREATE OR REPLACE USER 'root'@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING %s",
        "GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION",
        "DELETE FROM mysql.global_priv"
        " WHERE User = 'root' AND Host NOT IN ('localhost', '127.0.0.1')",
        "DELETE FROM mysql.global_priv WHERE User = ''",
        "FLUSH PRIVILEGES",
        "CREATE USER 'app'@'%%' IDENTIFIED VIA mysql_native_password USING %s",
        "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON `app`.* TO 'app'@'%%'",
    ]
    params = {1: root, 2: root, 7: app}
    conn = pymysql.connect(unix_socket=str(sock), user="root", password="", connect_timeout=10)
    try:
        with conn.cursor() as cursor:
            for n, statement in enumerate(statements):
                # Always with arguments, so that ``%%`` is one ``%`` in every statement.
                cursor.execute(statement, (params[n],) if n in params else ())
        conn.commit()
    finally:
        conn.close()
