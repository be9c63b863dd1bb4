"""Three ``keyturn serve`` nodes on one throwaway PostgreSQL store: the cluster of issue 13.

``KeyturnCluster`` makes a fresh database on the session's PostgreSQL (``store_postgres``) and
starts one ``KeyturnServer`` per node, each on its own port with its own ``KEYTURN_NODE_ID``
and data dir. The nodes share what an operator would give them: the store URL and the master
key (each data dir holds a copy of one ``master.key``, as a deployment distributes it; a node
whose key could not open the store's secrets would refuse to start). Each node reaches
PostgreSQL through its own ``TcpProxy``, so ``partition(i)`` cuts node ``i`` alone off the
store (its connections end, new ones are refused) and ``heal(i)`` lets it back.

The cluster's own ``admin`` is an unstarted ``KeyturnServer`` on the store directly (never
through a proxy): it registers instances, reads the store and runs the CLI as an operator would,
whichever node is cut off. ``owner(task_id)`` names the node whose lease a task is under, and
``node_of`` finds its server. ``make_cluster`` (a fixture, loaded as a plugin by
``tests/conftest.py``) makes clusters and stops them at teardown.
"""

from __future__ import annotations

import base64
import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest

from keyturn.store.sealing import KEY_FILE, new_master_key, write_key_file
from tests.support.cli import keyturn_cli
from tests.support.keyturn_server import KeyturnServer
from tests.support.store_backends import StorePostgres
from tests.support.tcp_proxy import TcpProxy

#: A short lease keeps takeovers quick; tests bound them by the lease.
LEASE = 4.0


def _through(url: str, port: int) -> str:
    """``url`` (``postgresql://cred@127.0.0.1:PORT/db``) with another port."""
    head, _, rest = url.rpartition("@")
    host_port, _, db = rest.partition("/")
    host = host_port.rsplit(":", 1)[0]
    return f"{head}@{host}:{port}/{db}"


class KeyturnCluster:
    """``size`` keyturn nodes on one PostgreSQL database, each behind its own proxy."""

    def __init__(
        self,
        root: Path,
        postgres: StorePostgres,
        *,
        size: int = 3,
        lease: float = LEASE,
        extra_env: Mapping[str, str] | None = None,
        node_env: Mapping[int, Mapping[str, str]] | None = None,
    ) -> None:
        self.postgres = postgres
        self.lease = lease
        self.url = postgres.database()
        key = new_master_key()
        #: Also what ``KEYTURN_MASTER_KEY`` would hold (base64 of the 32 bytes).
        self.master_key = base64.b64encode(key).decode()
        self.proxies = [TcpProxy(postgres.server.port) for _ in range(size)]
        self.nodes: list[KeyturnServer] = []
        for i, proxy in enumerate(self.proxies):
            node_root = root / f"node-{i}"
            env = {
                "KEYTURN_TASK_LEASE": f"{lease:g}",
                # A node cut off the store notices within a bounded time.
                "KEYTURN_STORE_TIMEOUT": "2",
                **(extra_env or {}),
                **((node_env or {}).get(i, {})),
            }
            self.nodes.append(
                KeyturnServer(
                    node_root,
                    data_dir=_data_dir_with_key(node_root / "data", key),
                    database_url=_through(self.url, proxy.port),
                    extra_env=env,
                )
            )
        admin_root = root / "admin"
        self.admin = KeyturnServer(
            admin_root,
            data_dir=_data_dir_with_key(admin_root / "data", key),
            database_url=self.url,
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 60.0) -> KeyturnCluster:
        for node in self.nodes:
            node.launch()
        for node in self.nodes:
            node.wait_started(timeout)
        for node in self.nodes:
            self.wait_ready(node, timeout)
        return self

    def wait_ready(self, node: KeyturnServer, timeout: float = 60.0) -> None:
        """Until ``node`` answers ``/readyz`` with 200 (store reachable, schema current)."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                if node.readyz(timeout=5).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"node {node.endpoint} not ready:\n{node.log()[-3000:]}")
            time.sleep(0.1)

    def restart(self, index: int) -> None:
        """Start node ``index`` again (after a kill) and wait until it is ready."""
        node = self.nodes[index]
        node.start(timeout=60)
        self.wait_ready(node)

    def close(self) -> None:
        for node in self.nodes:
            if node.process is not None:
                node.kill()
        for proxy in self.proxies:
            proxy.close()
        self.postgres.drop(self.url)

    # ------------------------------------------------------------------ partitions

    def partition(self, index: int) -> None:
        """Cut node ``index`` off the store."""
        self.proxies[index].cut()

    def heal(self, index: int) -> None:
        self.proxies[index].heal()

    # ------------------------------------------------------------------ the store

    def node_id(self, index: int) -> str:
        return self.nodes[index].env["KEYTURN_NODE_ID"]

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` on the store (directly, not through any node's proxy)."""
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            return list(conn.execute(sql, params).fetchall())

    def owner(self, task_id: int) -> str | None:
        """The node id whose lease ``task_id`` is under (None once released or ended)."""
        [(owner,)] = self.query("SELECT owner FROM tasks WHERE id = %s", (task_id,))
        return None if owner is None else str(owner)

    def index_of(self, node_id: str) -> int:
        [index] = [i for i in range(len(self.nodes)) if self.node_id(i) == node_id]
        return index

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``keyturn ARGS`` as an operator runs it against the shared store."""
        return keyturn_cli(self.admin.data_dir, *args, env=self.admin.store_env)

    def add_instance(self, instance_id: str, nodes: list[str], **options: Any) -> None:
        self.admin.add_instance(instance_id, nodes, **options)

    def logs(self) -> str:
        return "".join(node.log() for node in self.nodes)


def _data_dir_with_key(data_dir: Path, key: bytes) -> Path:
    data_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
    write_key_file(data_dir / KEY_FILE, key)
    return data_dir


@pytest.fixture
def make_cluster(
    tmp_path: Path, store_postgres: StorePostgres
) -> Iterator[Callable[..., KeyturnCluster]]:
    """Make (and start) clusters: ``make_cluster(lease=..., extra_env=..., node_env=...)``;
    every node is killed, every proxy closed and the database dropped at teardown."""
    made: list[KeyturnCluster] = []

    def make(**options: Any) -> KeyturnCluster:
        cluster = KeyturnCluster(tmp_path / f"cluster-{len(made)}", store_postgres, **options)
        made.append(cluster)
        return cluster.start()

    yield make
    for cluster in made:
        cluster.close()
