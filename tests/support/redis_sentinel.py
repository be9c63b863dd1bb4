"""A throwaway Redis Sentinel watching a throwaway primary, for tests.

It runs ``redis-server <conf> --sentinel`` as a child process on a free port in a temporary
directory, with its own ``requirepass``, monitoring the primary as ``mymaster`` (quorum 1) and
logging in to it and its replicas with ``auth-pass`` = the primary's password. Sentinel rewrites
its config file itself (``SENTINEL SET`` persists there, and so does a failover).
``down_after_ms`` and ``failover_timeout_ms`` say how soon it fails over a primary that stopped
answering; ``primary_port`` is the master it names now, ``wait_settled`` waits until no failover
is in progress and the master it names answers.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.ports import free_port
from tests.support.redis_server import RedisServer, RedisServerError, redis_server_binary
from tests.support.waiting import holds_by

MASTER = "mymaster"


class RedisSentinel:
    def __init__(
        self,
        primary: RedisServer,
        *,
        down_after_ms: int = 5000,
        failover_timeout_ms: int = 180_000,
    ) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RedisServerError("redis-server is not installed")
        self.binary = binary
        self.primary = primary
        self.password = secrets.token_urlsafe(12)
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="keyturn-sentinel-"))
        self.conf = self.dir / "sentinel.conf"
        self.conf.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    "bind 127.0.0.1",
                    "daemonize no",
                    f'dir "{self.dir}"',
                    f'requirepass "{self.password}"',
                    f"sentinel monitor {MASTER} 127.0.0.1 {primary.port} 1",
                    f'sentinel auth-pass {MASTER} "{primary.password or ""}"',
                    f"sentinel down-after-milliseconds {MASTER} {down_after_ms}",
                    f"sentinel failover-timeout {MASTER} {failover_timeout_ms}",
                    "",
                ]
            )
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisSentinel:
        with (self.dir / "sentinel.log").open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, str(self.conf), "--sentinel"],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while not self._answers():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RedisServerError(f"sentinel did not start: {self.log_tail()}")
            time.sleep(0.02)
        return self

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis(
            port=self.port,
            password=self.password,
            protocol=2,
            driver_info=None,
            socket_timeout=3,
            retry=Retry(NoBackoff(), 0),
        )

    def url(self) -> str:
        return f"redis://default:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{MASTER}"

    def master(self) -> dict[str, str]:
        client = self.client()
        try:
            reply = client.execute_command("SENTINEL", "MASTER", MASTER)
        finally:
            client.close()
        if isinstance(reply, dict):
            return {str(k): str(v) for k, v in reply.items()}
        items = [x.decode() if isinstance(x, bytes) else str(x) for x in reply]
        return dict(zip(items[::2], items[1::2], strict=True))

    def wait_replicas(self, count: int, timeout: float = 10.0) -> None:
        """Wait until the sentinel found ``count`` replicas of its master (candidates for a
        failover)."""
        deadline = time.monotonic() + timeout
        while self.master().get("num-slaves") != str(count):
            if time.monotonic() > deadline:
                raise RedisServerError("the sentinel did not discover the replicas")
            time.sleep(0.1)

    def primary_port(self) -> int:
        """The port of the master the sentinel names now (``GET-MASTER-ADDR-BY-NAME``)."""
        client = self.client()
        try:
            reply = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
        finally:
            client.close()
        return int(reply[1])

    def wait_settled(self, timeout: float = 30.0) -> bool:
        """Wait until the sentinel's master is flagged only ``master`` (no failover in
        progress, not down) and answered a PING within the last 2 s; whether it did."""

        def settled() -> bool:
            master = self.master()
            return master.get("flags") == "master" and int(master["last-ok-ping-reply"]) < 2000

        return holds_by(time.monotonic() + timeout, settled, every=0.1, despite=(redis.RedisError,))

    def config_text(self) -> str:
        return self.conf.read_text()

    def log_tail(self, lines: int = 20) -> str:
        path = self.dir / "sentinel.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)
