"""Throwaway MariaDB 10.11 servers for tests.

``mariadb-install-db --auth-root-authentication-method=normal --skip-test-db`` runs once per test
session into a template directory; every ``MariaDBServer`` copies it with ``cp -a`` into a
temporary directory of its own (mode 755, owned by the ``mysql`` OS user), writes a ``my.cnf``
(127.0.0.1 only, a free port, ``skip-name-resolve``, its own socket, a small InnoDB,
``performance_schema=OFF``, the general log and the binary log in that directory) and starts
``mariadbd --defaults-file=DIR/my.cnf`` as ``mysql``. Right after the first start, root gets its
password on ``root@localhost`` and ``root@127.0.0.1`` over the unix socket (as a client-computed
``mysql_native_password`` hash, so the plaintext never reaches the logs) and the other
passwordless root rows (``root@::1``, ``root@<hostname>``) are dropped. Only servers started here
are ever stopped, by the pid they wrote.

Every server writes a binary log with GTIDs (``server-id`` 1 for a primary), so any of them can
be a primary. A replica (``MariaDBServer(replica_of=primary)``) gets its own ``server-id`` and
``read_only``, is secured the same way (root's password is the primary's), then ``CHANGE MASTER
TO ... MASTER_USE_GTID=slave_pos`` and ``START SLAVE``: since every server starts from the same
template and the root set-up is kept out of the binary log (``sql_log_bin=0``), the replica
applies the primary's binary log from its start. The primary gets a ``repl@127.0.0.1`` user
with ``REPLICATION SLAVE`` (also outside the binary log) when its first replica is made.

A switchover (``switch_over(primary, replica)``) is the planned one: the primary stops taking
writes (``read_only=1``), the replica applies everything and is promoted (``STOP SLAVE; RESET
SLAVE ALL; SET GLOBAL read_only=0``), and the old primary replicates from it (``CHANGE MASTER
TO ... MASTER_USE_GTID=slave_pos; START SLAVE``) or is stopped. ``my.cnf`` follows the role
(``read_only`` for a replica), so a restart keeps it.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Final
from urllib.parse import quote

from tests.support.ports import free_port

INSTALL_DB: Final = "/usr/bin/mariadb-install-db"
MARIADBD: Final = "/usr/sbin/mariadbd"
CLIENT: Final = "/usr/bin/mariadb"
BINLOG_TOOLS: Final = ("/usr/bin/mariadb-binlog", "/usr/bin/mysqlbinlog")
OS_USER: Final = "mysql"

_template_lock = threading.Lock()
_template: Path | None = None


class MariaDBServerError(RuntimeError):
    """The server could not be set up, started or stopped."""


def mariadb_binaries() -> str | None:
    """The server binary, or None if MariaDB is not installed."""
    if all(os.access(b, os.X_OK) for b in (INSTALL_DB, MARIADBD, CLIENT)):
        return MARIADBD
    return None


def native_hash(password: str) -> str:
    """MariaDB's ``mysql_native_password`` hash of ``password`` (its UTF-8 bytes)."""
    inner = hashlib.sha1(password.encode()).digest()
    return "*" + hashlib.sha1(inner).hexdigest().upper()


def sql_string(value: str) -> str:
    """A single-quoted SQL string literal (test setup only)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _chown(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(OS_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _owned_tempdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    _chown(path)
    return path


def _run(argv: list[str], what: str, timeout: float = 120.0, stdin: bytes | None = None) -> str:
    done = subprocess.run(
        argv,
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace")[-2000:]
        raise MariaDBServerError(f"{what} failed with {done.returncode}: {output}")
    return done.stdout.decode(errors="replace")


def template_datadir() -> Path:
    """The session's pristine datadir, made by ``mariadb-install-db`` on first use."""
    global _template
    with _template_lock:
        if _template is not None:
            return _template
        root = _owned_tempdir("keyturn-mariadb-template-")
        atexit.register(shutil.rmtree, root, True)
        data = root / "data"
        argv = [
            INSTALL_DB,
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            f"--datadir={data}",
            f"--user={OS_USER}",
            "--skip-name-resolve",
            "--no-defaults",
        ]
        _run(argv, "mariadb-install-db")
        _template = data
        return data


class MariaDBServer:
    """One throwaway MariaDB server; ``password`` is root's (on localhost and 127.0.0.1). With
    ``replica_of`` (a running server), a read-only replica of it with root's password the
    primary's."""

    def __init__(
        self,
        *,
        password: str | None = None,
        start_timeout: float = 30.0,
        replica_of: MariaDBServer | None = None,
        performance_schema: bool = False,
    ) -> None:
        if mariadb_binaries() is None:
            raise MariaDBServerError("MariaDB is not installed")
        self.primary = replica_of
        #: ``performance_schema=ON`` (connect attributes: a client's ``program_name``).
        self.performance_schema = performance_schema
        if replica_of is not None:
            if password is not None and password != replica_of.password:
                raise MariaDBServerError("a replica has its primary's root password")
            password = replica_of.password
        self.password: str = password if password is not None else self.new_password()
        self.port = free_port()
        # Any id but the first primary's; the port is unique among running servers.
        self.server_id = "1" if replica_of is None else str(self.port)
        self.start_timeout = start_timeout
        self.dir = _owned_tempdir("keyturn-mariadb-")
        self.data = self.dir / "data"
        self.socket = self.dir / "mysqld.sock"
        self.pid_file = self.dir / "mariadbd.pid"
        self.error_log = self.dir / "error.log"
        self.general_log = self.dir / "general.log"
        self.binlog_base = self.dir / "binlog"
        self._proc: subprocess.Popen[bytes] | None = None
        self._password_set = False
        self._copied = False
        self._replication_password: str | None = None

    # ------------------------------------------------------------------ lifecycle

    def _prepare(self) -> None:
        if self._copied:
            return
        _run(["cp", "-a", str(template_datadir()), str(self.data)], "copying the template")
        self._copied = True
        self._write_conf()

    def _write_conf(self) -> None:
        """``my.cnf`` for the server's current role: a replica is ``read_only`` (also after a
        restart), a primary is not."""
        settings = {
            "user": OS_USER,
            "datadir": str(self.data),
            "port": str(self.port),
            "bind-address": "127.0.0.1",
            "skip-networking": "0",
            "skip-name-resolve": "1",
            "socket": str(self.socket),
            "pid-file": str(self.pid_file),
            "log-error": str(self.error_log),
            "innodb_buffer_pool_size": "16M",
            "innodb_log_file_size": "8M",
            "innodb_flush_log_at_trx_commit": "0",
            "performance_schema": "ON" if self.performance_schema else "OFF",
            "general_log": "1",
            "general_log_file": str(self.general_log),
            "log-bin": str(self.binlog_base),
            "binlog_format": "MIXED",
            "server-id": self.server_id,
            "relay-log": str(self.dir / "relay"),
            "max_connections": "100",
        }
        if self.primary is not None:
            settings["read_only"] = "1"
        lines = ["[mariadbd]", *(f"{k}={v}" for k, v in settings.items())]
        conf = self.dir / "my.cnf"
        conf.write_text("\n".join(lines) + "\n")
        _chown(conf)

    def start(self) -> MariaDBServer:
        """Start the server (same port, same data) and wait until it accepts connections."""
        if self.running:
            return self
        self._prepare()
        self._proc = subprocess.Popen(
            [MARIADBD, f"--defaults-file={self.dir / 'my.cnf'}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.start_timeout
        while not self._accepts():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self._kill()
                raise MariaDBServerError(f"mariadbd did not start:\n{self.log_tail()}")
            time.sleep(0.02)
        if not self._password_set:
            self._secure_root()
            if self.primary is not None:
                self._follow(self.primary)
        return self

    def _follow(self, primary: MariaDBServer) -> None:
        """Replicate from ``primary`` (GTID, from the start of its binary log)."""
        user, password = primary.replication_account()
        self.socket_sql(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1',"
            f" MASTER_PORT={primary.port}, MASTER_USER={sql_string(user)},"
            f" MASTER_PASSWORD={sql_string(password)}, MASTER_CONNECT_RETRY=1,"
            " MASTER_USE_GTID=slave_pos;"
            "START SLAVE;"
        )
        self.wait_replicating()

    def replication_account(self) -> tuple[str, str]:
        """``repl@127.0.0.1`` with ``REPLICATION SLAVE``, made on first use (not binlogged)."""
        if self._replication_password is None:
            password = self.new_password()
            self.socket_sql(
                "SET sql_log_bin=0;"
                "CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY PASSWORD"
                f" {sql_string(native_hash(password))};"
                "GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1';"
            )
            self._replication_password = password
        return "repl", self._replication_password

    def slave_status(self) -> dict[str, str]:
        """``SHOW SLAVE STATUS`` as a dict ({} when this server replicates from nothing)."""
        out = self.socket_sql("SHOW SLAVE STATUS\\G", column_names=True).splitlines()
        found: dict[str, str] = {}
        for line in out:
            key, sep, value = line.strip().partition(": ")
            if sep:
                found[key] = value
        return found

    def wait_replicating(self, timeout: float = 15.0) -> None:
        """Wait until both replication threads run."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.slave_status()
            if status.get("Slave_IO_Running") == "Yes" and status.get("Slave_SQL_Running") == "Yes":
                return
            if time.monotonic() > deadline:
                errors = {k: v for k, v in status.items() if k.startswith("Last_") and v}
                raise MariaDBServerError(f"replication did not start: {errors}")
            time.sleep(0.05)

    def wait_replicated(self, timeout: float = 10.0) -> None:
        """On a replica: wait until it applied everything its primary has logged so far."""
        if self.primary is None:
            raise MariaDBServerError("not a replica")
        position = self.primary.socket_sql("SELECT @@GLOBAL.gtid_binlog_pos").strip()
        if not position:
            return
        done = self.socket_sql(f"SELECT MASTER_GTID_WAIT({sql_string(position)}, {timeout:g})")
        if done.strip() != "0":
            raise MariaDBServerError(f"the replica did not apply {position} in {timeout:g} s")

    # ------------------------------------------------------------------ switchover

    def promote(self) -> None:
        """On a replica: stop replicating and forget the source (``STOP SLAVE; RESET SLAVE
        ALL``), then take writes (``read_only=0``); it is a primary from then on."""
        if self.primary is None:
            raise MariaDBServerError("not a replica")
        self.socket_sql("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only=0;")
        self.primary = None
        self._write_conf()

    def follow(self, primary: MariaDBServer) -> None:
        """Make this server (running or stopped; a former primary) a read-only replica of
        ``primary`` (``read_only=1``, ``CHANGE MASTER TO ... MASTER_USE_GTID=slave_pos``,
        ``START SLAVE``) and wait until it applied everything ``primary`` logged. Its
        ``gtid_slave_pos`` is empty (it never replicated) and ``primary`` logs only its own
        writes (no ``log_slave_updates``), so it applies ``primary``'s binary log from its
        start: exactly what it lacks."""
        if primary is self or not primary.running:
            raise MariaDBServerError("a replica follows another, running server")
        self.primary = primary
        self._write_conf()  # read_only from the start when it was stopped
        self.start()
        self.socket_sql("SET GLOBAL read_only=1;")
        self._follow(primary)
        self.wait_replicated()

    def _accepts(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.settimeout(0.5)
                return bool(sock.recv(1))
        except OSError:
            return False

    def socket_sql(self, statements: str, *, column_names: bool = False) -> str:
        """Run SQL as root over the unix socket with the ``mariadb`` client (setup only)."""
        argv = [CLIENT, "--no-defaults", f"--socket={self.socket}", "-uroot", "-B"]
        if not column_names:
            argv.append("-N")
        env_password = self.password if self._password_set else ""
        if env_password:
            argv.append(f"-p{env_password}")
        return _run(argv, "mariadb client", timeout=30, stdin=statements.encode())

    def _secure_root(self) -> None:
        hashed = sql_string(native_hash(self.password))
        self.socket_sql(
            "SET sql_log_bin=0;"
            f"ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING {hashed};"
            f"ALTER USER 'root'@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING {hashed};"
            "DELETE FROM mysql.global_priv WHERE User = 'root'"
            " AND Host NOT IN ('localhost', '127.0.0.1');"
            "DELETE FROM mysql.global_priv WHERE User = '';"
            "FLUSH PRIVILEGES;"
        )
        self._password_set = True

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server (SIGTERM to its own pid); does nothing if it is not running."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill()

    def restart(self) -> MariaDBServer:
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        with contextlib.suppress(MariaDBServerError, subprocess.TimeoutExpired):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> MariaDBServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers

    def url(self, user: str = "root", password: str | None = None) -> str:
        """``mysql://USER:PW@127.0.0.1:PORT``; ``password`` defaults to root's."""
        secret = self.password if password is None else password
        credential = quote(user, safe="") + ":" + quote(secret, safe="")
        return f"mysql://{credential}@127.0.0.1:{self.port}"

    def general_log_text(self) -> str:
        try:
            return self.general_log.read_text(errors="replace")
        except OSError:
            return ""

    def binlog_text(self) -> str:
        """Every binary log file decoded with ``mariadb-binlog``."""
        tool = next((t for t in BINLOG_TOOLS if os.access(t, os.X_OK)), None)
        if tool is None:
            raise MariaDBServerError("mariadb-binlog is not installed")
        files = sorted(
            str(p) for p in self.dir.glob("binlog.[0-9]*") if p.suffix.strip(".").isdigit()
        )
        if not files:
            return ""
        return _run([tool, "--no-defaults", *files], "mariadb-binlog", timeout=30)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.error_log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    @staticmethod
    def new_password() -> str:
        return secrets.token_urlsafe(18)

    def __repr__(self) -> str:
        return f"MariaDBServer(port={self.port}, dir={str(self.dir)!r})"


def switch_over(primary: MariaDBServer, replica: MariaDBServer, *, demote: bool = True) -> None:
    """A planned switchover: ``primary`` stops taking writes (``read_only=1``), ``replica``
    applies everything it logged and is promoted; then ``primary`` replicates from the new
    primary (``demote``) or is stopped."""
    if replica.primary is not primary:
        raise MariaDBServerError("the replica does not replicate from that primary")
    primary.socket_sql("SET GLOBAL read_only=1;")
    replica.wait_replicated()
    replica.promote()
    if demote:
        primary.follow(replica)
    else:
        primary.stop()
