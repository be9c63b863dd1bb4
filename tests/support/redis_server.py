"""Throwaway ``redis-server`` processes for tests and benchmarks.

``RedisServer`` starts ``redis-server`` as a child process (never daemonized, so the test can
stop, restart, SIGSTOP and SIGCONT it) on a free 127.0.0.1 port, in a temporary directory of its
own. By default it writes a config file there, so ``CONFIG REWRITE`` works, with persistence off
and a zero diskless-sync delay. It can also use an ``aclfile``, or run from command-line
arguments only (no config file: ``CONFIG REWRITE`` then fails), and listen for TLS as well on
``tls_port`` (``RedisTls``: certificate, key, CA; ``tls_url()`` is the ``rediss://`` URL that
trusts that CA). ``start()`` returns once the server answers PING on its plain port. The port
is kept across restarts. Only processes started here are ever signalled.

``admin_url()`` gives keyturn a dedicated admin ACL user (``kt_admin``, every command), made
and saved on first use, so a test can reset ``default`` (the instance password) without
resetting the account keyturn logs in with, which keyturn refuses unless the instance opts in.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import quote

import redis

from tests.support.ports import FIRST_START_TRIES, free_port, lost_port_race

#: Where the Debian package puts the server; ``KEYTURN_REDIS_SERVER`` overrides it.
DEFAULT_BINARY: Final = "/usr/bin/redis-server"
_KEEP: Final = object()
#: The dedicated admin user ``admin_url()`` makes.
ADMIN_USER: Final = "kt_admin"
#: Passwords of every admin user made here (the session's secret scan looks for them).
ADMIN_PASSWORDS: list[str] = []


class RedisServerError(RuntimeError):
    """The server could not be started or stopped."""


@dataclass(frozen=True)
class RedisTls:
    """PEM files for ``tls-port``: the server's certificate and key, and the CA clients use.
    ``auth_clients`` is redis.conf's ``tls-auth-clients`` (``no``: no client certificate)."""

    cert: Path
    key: Path
    ca: Path
    auth_clients: str = "no"


def redis_server_binary() -> str | None:
    """The redis-server executable to use, or None if there is none."""
    configured = os.environ.get("KEYTURN_REDIS_SERVER", DEFAULT_BINARY)
    if os.access(configured, os.X_OK):
        return configured
    return shutil.which("redis-server")


def _quote(value: str) -> str:
    """A redis.conf string argument."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


class RedisServer:
    """One throwaway redis-server. ``password`` is ``default``'s password (None: nopass)."""

    def __init__(
        self,
        *,
        password: str | None = None,
        aclfile: bool = False,
        config_file: bool = True,
        binary: str | None = None,
        start_timeout: float = 10.0,
        hz: int | None = None,
        replica_of: RedisServer | None = None,
        tls: RedisTls | None = None,
    ) -> None:
        found = binary or redis_server_binary()
        if found is None:
            raise RedisServerError("redis-server is not installed")
        if aclfile and not config_file:
            raise ValueError("an aclfile needs a config file")
        self.binary = found
        self.password = password
        self.port = free_port()
        self.start_timeout = start_timeout
        self.hz = hz
        #: The primary this server replicates from, logging in as ``default`` with its password.
        self.replica_of = replica_of
        self.tls = tls
        self.tls_port: int | None = free_port() if tls is not None else None
        self.dir = Path(tempfile.mkdtemp(prefix="keyturn-redis-"))
        self.conf_path: Path | None = self.dir / "redis.conf" if config_file else None
        self.aclfile_path: Path | None = self.dir / "users.acl" if aclfile else None
        self.log_path = self.dir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._started = False
        self.admin_password: str | None = None
        self._write_files()

    # ------------------------------------------------------------------ files

    def _settings(self) -> list[tuple[str, str]]:
        return [
            ("port", str(self.port)),
            ("bind", "127.0.0.1"),
            ("save", ""),
            ("appendonly", "no"),
            ("dir", str(self.dir)),
            ("daemonize", "no"),
            ("repl-diskless-sync-delay", "0"),
            *([("hz", str(self.hz))] if self.hz else []),
            *self._replication_settings(),
            *self._tls_settings(),
        ]

    def _tls_settings(self) -> list[tuple[str, str]]:
        if self.tls is None:
            return []
        return [
            ("tls-port", str(self.tls_port)),
            ("tls-cert-file", str(self.tls.cert)),
            ("tls-key-file", str(self.tls.key)),
            ("tls-ca-cert-file", str(self.tls.ca)),
            ("tls-auth-clients", self.tls.auth_clients),
        ]

    def _replication_settings(self) -> list[tuple[str, str]]:
        primary = self.replica_of
        if primary is None:
            return []
        found = [("replicaof", f"127.0.0.1 {primary.port}")]
        if primary.password is not None:
            found.append(("masterauth", primary.password))
        return found

    def _write_files(self) -> None:
        if self.conf_path is None:
            return
        lines = [f"{key} {_quote(value)}" for key, value in self._settings()]
        if self.aclfile_path is not None:
            lines.append(f"aclfile {_quote(str(self.aclfile_path))}")
            self.aclfile_path.write_text(self._acl_default_line() + "\n")
        elif self.password is not None:
            lines.append(f"requirepass {_quote(self.password)}")
        self.conf_path.write_text("\n".join(lines) + "\n")

    def _acl_default_line(self) -> str:
        if self.password is None:
            return "user default on nopass ~* &* +@all"
        digest = hashlib.sha256(self.password.encode()).hexdigest()
        return f"user default on #{digest} ~* &* +@all"

    def _argv(self) -> list[str]:
        if self.conf_path is not None:
            return [self.binary, str(self.conf_path)]
        argv = [self.binary]
        for key, value in self._settings():
            argv += [f"--{key}", *value.split(" ")] if key == "replicaof" else [f"--{key}", value]
        if self.password is not None:
            argv += ["--requirepass", self.password]
        return argv

    # ------------------------------------------------------------------ lifecycle

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> RedisServer:
        """Start the server (same port, same files) and wait until it answers PING.

        On the very first start a port taken in the meantime is replaced by another one."""
        if self.running:
            return self
        attempts = 1 if self._started else FIRST_START_TRIES
        for attempt in range(attempts):
            if not self._started:
                self.log_path.write_bytes(b"")
            try:
                self._spawn()
            except RedisServerError:
                in_use = lost_port_race(self.log_tail())
                if attempt + 1 == attempts or not in_use:
                    raise
                self.port = free_port()
                self._write_files()
            else:
                break
        self._started = True
        return self

    def _spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self._argv(),
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RedisServerError(
                    f"redis-server exited with {self.process.returncode}: {self.log_tail()}"
                )
            if self.answers_ping():
                return
            time.sleep(0.01)
        self.stop()
        raise RedisServerError(f"redis-server did not answer within {self.start_timeout} s")

    def answers_ping(self, timeout: float = 0.5) -> bool:
        """Whether the server replies to PING at all (``-NOAUTH`` counts as a reply)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
        except OSError:
            return False
        return reply[:1] in (b"+", b"-")

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server and wait for it (SIGKILL if it does not exit in time)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)  # a paused server cannot handle SIGTERM
            process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def crash(self) -> None:
        """Kill the server at once (SIGKILL), as a machine that dies: no graceful shutdown
        (a primary's SIGTERM waits for its replicas to catch up first)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait(10)

    def restart(self) -> RedisServer:
        self.stop()
        return self.start()

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers

    def url(self, user: str = "default", password: str | object | None = _KEEP) -> str:
        """``redis://USER:PW@127.0.0.1:PORT``; ``password`` defaults to ``self.password``."""
        secret = self.password if password is _KEEP else password
        credential = quote(user, safe="")
        if secret is not None:
            credential += ":" + quote(str(secret), safe="")
        return f"redis://{credential}@127.0.0.1:{self.port}"

    def admin_url(self) -> str:
        """The URL of a dedicated admin user with every command, made (logging in as
        ``default`` with ``self.password``) and saved on the first call."""
        if self.admin_password is None:
            password = self.new_password()
            client = redis.Redis(
                port=self.port,
                password=self.password,
                protocol=2,
                driver_info=None,
                socket_timeout=3,
            )
            try:
                client.execute_command(
                    "ACL", "SETUSER", ADMIN_USER, "on", f">{password}", "~*", "&*", "+@all"
                )
                self._save(client)
            finally:
                client.close()
            self.admin_password = password
            ADMIN_PASSWORDS.append(password)
        return self.url(ADMIN_USER, self.admin_password)

    def command(self, *args: str) -> object:
        """Run one command as ``default`` (test setup only: not through keyturn)."""
        client = redis.Redis(
            port=self.port, password=self.password, protocol=2, driver_info=None, socket_timeout=3
        )
        try:
            return client.execute_command(*args)
        finally:
            client.close()

    def _save(self, client: redis.Redis) -> None:
        """Keep the ACL across restarts where the server can (no config file: it cannot)."""
        if self.conf_path is None:
            return
        if self.aclfile_path is not None:
            client.execute_command("ACL", "SAVE")
        else:
            client.execute_command("CONFIG", "REWRITE")

    def tls_url(self, user: str = "default", password: str | object | None = _KEEP) -> str:
        """``rediss://USER:PW@127.0.0.1:TLS_PORT?ssl_ca_certs=CA`` (needs ``tls``)."""
        assert self.tls is not None, "this server has no TLS port"
        plain = self.url(user, password)
        query = f"ssl_ca_certs={quote(str(self.tls.ca), safe='/')}"
        return f"rediss{plain[len('redis') : plain.rindex(':')]}:{self.tls_port}?{query}"

    def replication(self) -> dict[str, str]:
        """``INFO replication`` as a dict (logging in as ``default`` with ``self.password``)."""
        client = redis.Redis(
            port=self.port, password=self.password, protocol=2, driver_info=None, socket_timeout=3
        )
        try:
            info = client.info("replication")
        finally:
            client.close()
        return {str(key): str(value) for key, value in info.items()}

    def wait_link_up(self, timeout: float = 10.0) -> None:
        """Wait until this replica's link to its primary is up."""
        deadline = time.monotonic() + timeout
        while self.replication().get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise RedisServerError(f"replica {self.port} link still down: {self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    @staticmethod
    def new_password() -> str:
        return secrets.token_urlsafe(18)

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, pid={self.pid}, dir={str(self.dir)!r})"
