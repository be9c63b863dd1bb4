"""Run a real ``keyturn serve`` process for wire and end-to-end tests.

The server runs as a subprocess (so tests can SIGKILL and restart it) on a free port with its
own data dir and an inventory file; its combined output goes to a log file that tests grep for
leaked secrets. Instances are registered straight into the same data dir, as the CLI would.
Several servers may share one data dir (``data_dir=``): nodes of one cluster on one SQLite
store. Each server has a stable ``KEYTURN_NODE_ID``, so a restarted server reclaims the tasks
it held at once, as a node with a configured id does.
With ``database_url`` the store is that database (``KEYTURN_DATABASE_URL``, e.g. a
``store_postgres`` database) instead of SQLite in the data dir; the master key stays there.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import httpx

from keyturn.config import load_settings
from keyturn.core.model import Product
from keyturn.core.secrets import Secret
from keyturn.service.admin import Admin
from keyturn.store.sql import SqlStore
from tests.support.ports import FIRST_START_TRIES, free_port, lost_port_race

TENANT = "1300000001"
OTHER_TENANT = "1300000002"
KEY_ID = "AKIDkeyturnTEST0001"
KEY_SECRET = "test-secret-0123456789abcdef"
OTHER_KEY_ID = "AKIDkeyturnTEST0002"
OTHER_KEY_SECRET = "other-secret-0123456789abcdef"
#: A Huawei Cloud project (tenant ids are the vendor's account or project ids) and its AK/SK.
HW_PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
HW_AK = "HWAKKEYTURNTEST00001"
HW_SK = "hw-secret-0123456789abcdef0123"
T = TypeVar("T")

INVENTORY = f"""
[[tenants]]
id = "{TENANT}"
name = "tests"

[[tenants]]
id = "{OTHER_TENANT}"
name = "someone else"

[[keys]]
tenant = "{TENANT}"
id = "{KEY_ID}"
secret = "{KEY_SECRET}"

[[keys]]
tenant = "{OTHER_TENANT}"
id = "{OTHER_KEY_ID}"
secret_env = "KT_OTHER_SECRET"

[[tenants]]
id = "{HW_PROJECT}"
name = "huawei project"

[[keys]]
tenant = "{HW_PROJECT}"
id = "{HW_AK}"
secret = "{HW_SK}"
"""

#: Every server made in this test session; ``tests/conftest.py`` scans their data dirs and logs
#: for test secrets when the session ends.
CREATED: list[KeyturnServer] = []


class KeyturnServer:
    """One keyturn server process and its data dir. ``extra_args`` are added to the ``serve``
    command line (e.g. ``["--workers", "2"]``)."""

    def __init__(
        self,
        root: Path,
        *,
        extra_env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        data_dir: Path | None = None,
        database_url: str | None = None,
    ) -> None:
        self.root = root
        self.extra_args = list(extra_args)
        self.database_url = database_url
        #: What the CLI-side helpers (``add_instance``, ``with_store``) resolve settings from.
        self.store_env = {} if database_url is None else {"KEYTURN_DATABASE_URL": database_url}
        root.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir or root / "data"
        self.config = root / "keyturn.toml"
        self.log_path = root / "server.log"
        CREATED.append(self)
        self.port = free_port()
        #: Whether the server has answered once: until then a port taken in the meantime may be
        #: replaced (later restarts keep the port tests and clients already know).
        self.answered = False
        self._launched_at = 0
        self._extra_env: dict[str, str] = {}
        self.config.write_text(INVENTORY)
        self.env = {
            **os.environ,
            "KT_OTHER_SECRET": OTHER_KEY_SECRET,
            "KEYTURN_LOG_LEVEL": "DEBUG",
            # Tests call faster than the vendors' documented limits; the rate-limit test
            # sets its own.
            "KEYTURN_RATE_LIMITS": "*=100000",
            "KEYTURN_NODE_ID": self._node_id(self.port),
            **self.store_env,
            **(extra_env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, extra_env: Mapping[str, str] | None = None, timeout: float = 20.0) -> None:
        self.launch(extra_env)
        self.wait_started(timeout)

    def launch(self, extra_env: Mapping[str, str] | None = None) -> None:
        """Start the process without waiting for it to answer (several servers at once)."""
        self._extra_env = dict(extra_env or {})
        env = {**self.env, **self._extra_env}
        log = self.log_path.open("ab")
        self._launched_at = log.tell()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "keyturn",
                "serve",
                "--config",
                str(self.config),
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()

    def wait_started(self, timeout: float = 20.0) -> None:
        """Wait until the launched server answers ``/healthz``. On the very first start a port
        another process took since ``free_port`` chose it is replaced by a new one."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        retries = FIRST_START_TRIES - 1
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if self.answered or retries == 0 or not self._lost_port_race():
                    raise RuntimeError(f"keyturn exited early:\n{self.log()}")
                retries -= 1
                self._move_to(free_port())
                continue
            try:
                if self.healthy():
                    self.answered = True
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"keyturn did not start:\n{self.log()}")

    def _lost_port_race(self) -> bool:
        """Whether the last launch's own lines of the log say its port was taken."""
        with self.log_path.open("rb") as log:
            log.seek(self._launched_at)
            return lost_port_race(log.read().decode(errors="replace"))

    def _node_id(self, port: int) -> str:
        return f"test-{self.root.name}-{port}"

    def _move_to(self, port: int) -> None:
        if self.env.get("KEYTURN_NODE_ID") == self._node_id(self.port):
            self.env["KEYTURN_NODE_ID"] = self._node_id(port)
        self.port = port
        self.launch(self._extra_env)

    def healthy(self) -> bool:
        """Whether the server answers ``/healthz`` (an ``httpx.HTTPError`` while it cannot)."""
        return httpx.get(f"http://{self.endpoint}/healthz", timeout=0.5).status_code == 200

    def readyz(self, timeout: float = 10.0) -> httpx.Response:
        """``GET /readyz``: 200 when the store answers at the newest schema, else 503."""
        return httpx.get(f"http://{self.endpoint}/readyz", timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout)
        self.process = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def rss(self) -> int:
        """The server process's resident memory in bytes (``VmRSS``)."""
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        [line] = [line for line in status.splitlines() if line.startswith("VmRSS:")]
        return int(line.split()[1]) * 1024

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def add_instance(
        self,
        instance_id: str,
        nodes: Sequence[str],
        *,
        product: Product = Product.TENCENT_REDIS,
        tenant: str = TENANT,
        password_free_allowed: bool = True,
        name: str = "",
        region: str = "ap-guangzhou",
        sentinels: Sequence[str] = (),
        allow_admin_reset: bool = False,
        cluster: bool = False,
    ) -> None:
        """Register an instance in the server's data dir (the server reads it per request).
        ``allow_admin_reset``: the vendor APIs may reset the accounts keyturn logs in with
        (tests whose point is keyturn resetting its own admin, e.g. ``redis://default:...``
        and the instance password). ``cluster``: a Redis Cluster, ``nodes`` are its seeds."""

        async def go() -> None:
            from keyturn.bootstrap import open_admin_store

            store = await open_admin_store(
                load_settings(data_dir=self.data_dir, env=self.store_env)
            )
            try:
                await Admin(store).add_instance(
                    tenant_id=tenant,
                    instance_id=instance_id,
                    product=product,
                    region=region,
                    node_urls=[Secret(n) for n in nodes],
                    name=name,
                    password_free_allowed=password_free_allowed,
                    sentinel_urls=[Secret(url) for url in sentinels],
                    allow_admin_reset=allow_admin_reset,
                    cluster=cluster,
                )
            finally:
                await store.close()

        asyncio.run(go())

    def with_admin(self, action: Callable[[Admin], Awaitable[T]]) -> T:
        """Run ``action`` with an ``Admin`` on the server's data dir, as the CLI would (keys,
        policies...); the server sees a key's change within its one-second key cache."""
        return self.with_store(lambda store: action(Admin(store)))

    def with_store(self, action: Callable[[SqlStore], Awaitable[T]]) -> T:
        """Run ``action`` with the store of the server's data dir (to read what the server
        recorded: tasks and their times)."""

        async def go() -> T:
            from keyturn.bootstrap import open_admin_store

            store = await open_admin_store(
                load_settings(data_dir=self.data_dir, env=self.store_env)
            )
            try:
                return await action(store)
            finally:
                await store.close()

        return asyncio.run(go())

    def data_bytes(self) -> bytes:
        """Everything in the data dir, for secret scans."""
        return b"".join(p.read_bytes() for p in sorted(self.data_dir.rglob("*")) if p.is_file())
