"""Throwaway PostgreSQL 15 servers for tests.

PostgreSQL refuses to run as root, so ``initdb`` and the server run as the ``postgres`` OS user
(through ``runuser`` when the test runs as root). ``initdb`` runs once per test session into a
template directory (``--auth-local=scram-sha-256 --auth-host=scram-sha-256 -U postgres
--pwfile --no-sync``); every ``PostgresServer`` copies it with ``cp -a`` into a temporary
directory of its own, writes its settings (127.0.0.1 only, a free port, its own unix socket
directory, ``password_encryption=scram-sha-256``, ``fsync=off``, ``log_statement='all'``) and
starts it with ``pg_ctl -w``. The server log is a file in that directory, so tests can grep it.
The superuser is ``postgres``; when it gets a password other than the template's, that password
is set as a client-computed SCRAM verifier, so it never reaches the log in clear. Only servers
started here are ever stopped, through ``pg_ctl`` on their own data directory.

A hot standby (``PostgresServer(standby_of=primary)``) is made instead with ``pg_basebackup -R
-X stream -c fast`` from the running primary (as the ``postgres`` OS user, the superuser's
password passed in ``PGPASSWORD``), which copies the primary's settings; only its own port and
socket directory are rewritten. The template's ``pg_hba.conf`` allows ``replication``
connections from 127.0.0.1 with scram-sha-256 (initdb's default with ``--auth-host``; ensured
here). ``wal_level = replica`` is the default. The standby shares the primary's roles and
passwords, since it replays them, and ``primary_conninfo`` (in its ``postgresql.auto.conf``)
holds the superuser's password.

A switchover (``switch_over(primary, standby)``) is the planned one: the primary is stopped
cleanly (its WAL senders ship everything up to its shutdown checkpoint), the standby replays
that checkpoint and is promoted (``pg_ctl promote -w``, then ``pg_is_in_recovery()`` must turn
false), and the old primary is re-pointed as a hot standby of the new one (``standby.signal``
and a new ``primary_conninfo``). Its history is then a prefix of the new timeline, so it simply
follows the new primary: no ``pg_rewind`` (which would need ``wal_log_hints`` and
``full_page_writes``) and no new base backup. A server whose history diverged (it was promoted,
or wrote after the standby was promoted: a split brain) is re-pointed with ``rebuild=True``,
a fresh base backup from the new primary.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final
from urllib.parse import quote

from tests.support.ports import free_port

#: Where Debian puts the PostgreSQL 15 binaries; ``KEYTURN_PG_BINDIR`` overrides it.
DEFAULT_BINDIR: Final = "/usr/lib/postgresql/15/bin"
#: The template cluster's superuser password, replaced per server unless asked for.
TEMPLATE_PASSWORD: Final = "template-adminpw"
OS_USER: Final = "postgres"
_IN_RECOVERY: Final = "SELECT pg_catalog.pg_is_in_recovery()"
_RECEIVER_STATUS: Final = "SELECT status FROM pg_catalog.pg_stat_wal_receiver"

_template_lock = threading.Lock()
_template: Path | None = None


class PostgresServerError(RuntimeError):
    """The server could not be set up, started or stopped."""


def postgres_bindir() -> str | None:
    """The directory holding initdb, pg_ctl and postgres, or None if there is none."""
    configured = os.environ.get("KEYTURN_PG_BINDIR", DEFAULT_BINDIR)
    if all(os.access(os.path.join(configured, b), os.X_OK) for b in ("initdb", "pg_ctl")):
        return configured
    return None


def _as_postgres(argv: list[str]) -> list[str]:
    """``argv`` run as the postgres OS user (directly if the test already runs as it)."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", OS_USER, "--", *argv]


def _owned_tempdir(prefix: str) -> Path:
    """A new temporary directory (mode 755) that the postgres OS user owns."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    if os.geteuid() == 0:
        entry = pwd.getpwnam(OS_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def _run(argv: list[str], what: str, timeout: float = 120.0) -> None:
    done = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace")[-2000:]
        raise PostgresServerError(f"{what} failed with {done.returncode}: {output}")


def template_cluster(bindir: str) -> Path:
    """The session's pristine data directory, made by ``initdb`` on first use."""
    global _template
    with _template_lock:
        if _template is not None:
            return _template
        root = _owned_tempdir("keyturn-pg-template-")
        atexit.register(shutil.rmtree, root, True)
        pwfile = root / "pwfile"
        pwfile.write_text(TEMPLATE_PASSWORD + "\n")
        if os.geteuid() == 0:
            entry = pwd.getpwnam(OS_USER)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        data = root / "data"
        _run(
            _as_postgres(
                [
                    f"{bindir}/initdb",
                    "-D",
                    str(data),
                    "-U",
                    OS_USER,
                    f"--pwfile={pwfile}",
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            ),
            "initdb",
        )
        pwfile.unlink()
        _allow_replication(data)
        _template = data
        return data


#: The ``pg_hba.conf`` line a standby's ``pg_basebackup`` and WAL receiver need.
REPLICATION_HBA: Final = "host replication all 127.0.0.1/32 scram-sha-256"


def _allow_replication(data: Path) -> None:
    """Make sure ``pg_hba.conf`` lets replication connections in from 127.0.0.1."""
    hba = data / "pg_hba.conf"
    lines = [line.split() for line in hba.read_text().splitlines()]
    if REPLICATION_HBA.split() not in lines:
        with hba.open("a") as out:
            out.write(REPLICATION_HBA + "\n")


def _conninfo_value(value: str) -> str:
    """A libpq connection-string value, quoted."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _conf_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class PostgresServer:
    """One throwaway PostgreSQL server; ``password`` is the ``postgres`` superuser's. With
    ``standby_of`` (a running server), a hot standby streaming from it, whose superuser
    password is the primary's."""

    def __init__(
        self,
        *,
        password: str | None = None,
        bindir: str | None = None,
        start_timeout: float = 30.0,
        standby_of: PostgresServer | None = None,
    ) -> None:
        found = bindir or postgres_bindir()
        if found is None:
            raise PostgresServerError("PostgreSQL 15 is not installed")
        self.bindir = found
        self.primary = standby_of
        if standby_of is not None:
            if password is not None and password != standby_of.password:
                raise PostgresServerError("a standby has its primary's superuser password")
            password = standby_of.password
        self.password: str = password if password is not None else self.new_password()
        self.port = free_port()
        self.start_timeout = start_timeout
        self.dir = _owned_tempdir("keyturn-pg-")
        self.data = self.dir / "data"
        self.log_path = self.dir / "postgresql.log"
        # A standby replays the primary's roles: its password is already the primary's.
        self._password_set = standby_of is not None
        self._copied = False

    # ------------------------------------------------------------------ lifecycle

    def _prepare(self) -> None:
        if self._copied:
            return
        if self.primary is not None:
            self._base_backup(self.primary)
            self._copied = True
            self._write_conf(include=False)  # the copied postgresql.conf already includes it
            return
        template = template_cluster(self.bindir)
        _run(["cp", "-a", str(template), str(self.data)], "copying the template cluster")
        self._copied = True
        self._write_conf()

    def _base_backup(self, primary: PostgresServer) -> None:
        """Copy the running primary into this server's data directory, set up to stream."""
        if not primary.running:
            raise PostgresServerError("a standby needs its primary running")
        argv = [
            f"{self.bindir}/pg_basebackup",
            *("-h", "127.0.0.1", "-p", str(primary.port), "-U", OS_USER, "-w"),
            *("-D", str(self.data), "-R", "-X", "stream", "-c", "fast", "--no-sync"),
        ]
        done = subprocess.run(
            _as_postgres(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
            check=False,
            env={**os.environ, "PGPASSWORD": primary.password},
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")[-2000:]
            raise PostgresServerError(f"pg_basebackup failed with {done.returncode}: {output}")

    def _write_conf(self, *, include: bool = True) -> None:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.dir),
            "password_encryption": "scram-sha-256",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "log_statement": "all",
            "log_min_error_statement": "error",
            "max_connections": "100",
        }
        lines = [f"{k} = {_conf_string(v)}" for k, v in settings.items()]
        (self.data / "keyturn.conf").write_text("\n".join(lines) + "\n")
        if include:
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write("\ninclude 'keyturn.conf'\n")

    def start(self) -> PostgresServer:
        """Start the server (same port, same data) and wait until it accepts connections."""
        if self.running:
            return self
        self._prepare()
        argv = [
            f"{self.bindir}/pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            str(int(self.start_timeout)),
            "start",
        ]
        try:
            _run(_as_postgres(argv), "pg_ctl start", timeout=self.start_timeout + 5)
        except PostgresServerError as exc:
            raise PostgresServerError(f"{exc}\n{self.log_tail()}") from None
        if not self._password_set:
            self._set_superuser_password()
        return self

    def _set_superuser_password(self) -> None:
        import psycopg
        from psycopg import sql

        if self.password != TEMPLATE_PASSWORD:
            url = self.url(OS_USER, TEMPLATE_PASSWORD)
            with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                verifier = conn.pgconn.encrypt_password(
                    self.password.encode(), OS_USER.encode(), b"scram-sha-256"
                ).decode()
                conn.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        sql.Identifier(OS_USER), sql.Literal(verifier)
                    )
                )
        self._password_set = True

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server (``pg_ctl stop -m fast``); does nothing if it is not running."""
        if not self.running:
            return
        argv = [f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"]
        argv += ["-t", str(int(timeout))]
        _run(_as_postgres(argv), "pg_ctl stop", timeout=timeout + 5)

    def restart(self) -> PostgresServer:
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        with contextlib.suppress(PostgresServerError, subprocess.TimeoutExpired):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers

    def url(
        self, user: str = OS_USER, password: str | None = None, dbname: str = "postgres"
    ) -> str:
        """``postgresql://USER:PW@127.0.0.1:PORT/DBNAME``; ``password`` defaults to the
        superuser's password."""
        secret = self.password if password is None else password
        credential = quote(user, safe="") + ":" + quote(secret, safe="")
        return f"postgresql://{credential}@127.0.0.1:{self.port}/{quote(dbname, safe='')}"

    def sql_value(self, query: str, params: tuple[object, ...] = ()) -> object:
        """The first column of the first row of ``query`` (None if it returns no rows), run
        as the superuser (test setup only)."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(query, params)
            row = cursor.fetchone() if cursor.description is not None else None
        return None if row is None else row[0]

    def wait_replayed(self, timeout: float = 10.0) -> None:
        """On a standby: wait until it replayed everything its primary has written so far."""
        if self.primary is None:
            raise PostgresServerError("not a standby")
        lsn = self.primary.sql_value("SELECT pg_current_wal_insert_lsn()::text")
        deadline = time.monotonic() + timeout
        while not self.sql_value("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)):
            if time.monotonic() > deadline:
                raise PostgresServerError(f"the standby did not replay up to {lsn}")
            time.sleep(0.02)

    def set_replay_paused(self, paused: bool) -> None:
        """On a standby: pause (or resume) WAL replay; WAL still streams in."""
        function = "pg_wal_replay_pause" if paused else "pg_wal_replay_resume"
        self.sql_value(f"SELECT {function}()::text")

    # ------------------------------------------------------------------ switchover

    def promote(self, timeout: float = 30.0) -> None:
        """On a standby: end recovery (``pg_ctl promote -w``, as the postgres OS user) and
        wait until ``pg_is_in_recovery()`` is false; it is a primary from then on."""
        if self.primary is None:
            raise PostgresServerError("not a standby")
        argv = [f"{self.bindir}/pg_ctl", "-D", str(self.data), "-w", "-t", str(int(timeout))]
        _run(_as_postgres([*argv, "promote"]), "pg_ctl promote", timeout=timeout + 5)
        self._wait_for("promoted", timeout, lambda: not self.sql_value(_IN_RECOVERY))
        self.primary = None

    def follow(
        self, primary: PostgresServer, *, rebuild: bool = False, timeout: float = 30.0
    ) -> None:
        """Make this server (running or stopped) a hot standby of ``primary`` and wait until it
        streams and has replayed everything ``primary`` wrote. Without ``rebuild`` it keeps
        its data and follows ``primary``'s newer timeline, which needs its history to be a
        prefix of it (``switch_over`` ensures that); ``rebuild`` starts again from a fresh base
        backup (a split brain: both wrote after the fork)."""
        if primary is self or not primary.running:
            raise PostgresServerError("a standby follows another, running server")
        self.stop()
        self.primary = primary
        self.password = primary.password
        if rebuild:
            shutil.rmtree(self.data)
            self._base_backup(primary)
            self._write_conf(include=False)
        else:
            self._point_at(primary)
        self.start()
        self._wait_for(
            "streaming from the new primary",
            timeout,
            lambda: self.sql_value(_RECEIVER_STATUS) == "streaming",
        )
        # A fresh base backup leaves the primary's insert position past the next segment's
        # header, which replay reaches only with the next record: write one (a commit).
        primary.sql_value("SELECT pg_catalog.txid_current()")
        self.wait_replayed(timeout)

    def _point_at(self, primary: PostgresServer) -> None:
        """``standby.signal`` and a ``primary_conninfo`` naming ``primary``. They go to
        ``postgresql.auto.conf``, which overrides ``postgresql.conf`` and its includes (and
        holds what ``pg_basebackup -R`` wrote); a former primary retries the new one every
        200 ms rather than PostgreSQL's 5 s while it switches to the new timeline."""
        conninfo = " ".join(
            f"{key}={_conninfo_value(value)}"
            for key, value in (
                ("host", "127.0.0.1"),
                ("port", str(primary.port)),
                ("user", OS_USER),
                ("password", primary.password),
            )
        )
        settings = {"primary_conninfo": conninfo, "wal_retrieve_retry_interval": "200ms"}
        auto = self.data / "postgresql.auto.conf"
        kept = [
            line
            for line in auto.read_text().splitlines()
            if line.split("=", 1)[0].strip() not in settings
        ]
        kept += [f"{key} = {_conf_string(value)}" for key, value in settings.items()]
        auto.write_text("\n".join(kept) + "\n")  # in place: the postgres OS user keeps it
        signal = self.data / "standby.signal"
        signal.touch()
        if os.geteuid() == 0:
            entry = pwd.getpwnam(OS_USER)
            os.chown(signal, entry.pw_uid, entry.pw_gid)

    def checkpoint_location(self) -> str:
        """The stopped server's latest checkpoint (``pg_controldata``): after a clean stop,
        its shutdown checkpoint, the last record it wrote."""
        if self.running:
            raise PostgresServerError("pg_controldata needs the server stopped")
        argv = _as_postgres([f"{self.bindir}/pg_controldata", "-D", str(self.data)])
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        for line in done.stdout.decode(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Latest checkpoint location":
                return value.strip()
        raise PostgresServerError("pg_controldata named no checkpoint location")

    def wait_replayed_past(self, lsn: str, timeout: float = 10.0) -> None:
        """Wait until this standby replayed the WAL record starting at ``lsn``."""
        self._wait_for(
            f"replayed past {lsn}",
            timeout,
            lambda: self.sql_value("SELECT pg_last_wal_replay_lsn() > %s::pg_lsn", (lsn,)),
        )

    def _wait_for(self, what: str, timeout: float, done: Callable[[], object]) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if done():
                    return
            except Exception as exc:  # psycopg's: the server may refuse a moment
                if time.monotonic() > deadline:
                    raise PostgresServerError(f"{what}: {type(exc).__name__}") from None
            if time.monotonic() > deadline:
                raise PostgresServerError(f"not {what} within {timeout:g} s\n{self.log_tail()}")
            time.sleep(0.02)

    def log_text(self) -> str:
        """The whole server log so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    @staticmethod
    def new_password() -> str:
        return secrets.token_urlsafe(18)

    def __repr__(self) -> str:
        return f"PostgresServer(port={self.port}, dir={str(self.dir)!r})"


def switch_over(primary: PostgresServer, standby: PostgresServer, *, demote: bool = True) -> None:
    """A planned switchover: ``primary`` is stopped cleanly, ``standby`` replays everything it
    wrote (its shutdown checkpoint included) and is promoted; then ``primary`` follows the new
    primary as a hot standby (``demote``) or stays stopped."""
    if standby.primary is not primary:
        raise PostgresServerError("the standby does not stream from that primary")
    primary.stop()
    standby.wait_replayed_past(primary.checkpoint_location())
    standby.promote()
    if demote:
        primary.follow(standby)
