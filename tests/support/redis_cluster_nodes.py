"""A throwaway Redis Cluster for tests: primaries and replicas on free ports, each a
``redis-server`` of its own in a temporary directory (``RedisServer`` with ``cluster-enabled``).

Every node has the same ``default`` password (the instance password, which the cluster's
replicas also log in to their primaries with: ``masterauth`` is set on every node, since any
node may become a replica after a failover) and the same dedicated admin user
(``kt_admin``, every command, as ``RedisServer.admin_url()`` makes one), so keyturn can
administer the nodes it discovers with the login of a declared seed. The cluster is built from
Python as ``redis-cli --cluster create`` would: slots are split between the primaries
(``CLUSTER ADDSLOTSRANGE``), every node meets the first (``CLUSTER MEET`` with the cluster bus
port, which ``cluster-port`` sets explicitly so that it is free too), each replica follows its
primary (``CLUSTER REPLICATE``); ``start()`` returns once every node reports
``cluster_state:ok`` and sees every other node in its place, and every replica's link is up.
``add_node()`` joins a node later; ``failover()`` promotes a replica (``CLUSTER FAILOVER``).
The helpers log in as the admin user, so they keep working while tests change ``default``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.ports import free_port
from tests.support.redis_server import (
    ADMIN_PASSWORDS,
    ADMIN_USER,
    RedisServer,
    RedisServerError,
)

#: Redis Cluster's hash slots.
SLOTS = 16384
#: Long enough that a node restarting (about 0.1 s) is never taken for failed, short enough
#: for the tests that stop one.
NODE_TIMEOUT_MS = 3000


def _port(taken: set[int]) -> int:
    """A free port that no other node of the cluster was given (they are all chosen before
    any of them listens)."""
    while (port := free_port()) in taken:
        pass
    taken.add(port)
    return port


class ClusterNode(RedisServer):
    """One cluster-enabled redis-server: ``default`` has ``password``, and ``kt_admin`` has
    ``admin_password`` (written into its config file). ``taken``: ports of the other nodes."""

    def __init__(
        self,
        *,
        password: str,
        admin_password: str,
        binary: str | None = None,
        taken: set[int] | None = None,
    ) -> None:
        self._taken = taken if taken is not None else set()
        self.bus_port = _port(self._taken)
        self._admin_secret = admin_password
        super().__init__(password=password, binary=binary)
        self.admin_password = admin_password
        if self.port in self._taken:
            self.port = _port(self._taken)
            self._write_files()
        self._taken.add(self.port)

    def _settings(self) -> list[tuple[str, str]]:
        assert self.password is not None
        return [
            *super()._settings(),
            ("cluster-enabled", "yes"),
            ("cluster-config-file", "nodes.conf"),
            ("cluster-port", str(self.bus_port)),
            ("cluster-node-timeout", str(NODE_TIMEOUT_MS)),
            # Every node may become a replica (a failover): it logs in as ``default``.
            ("masterauth", self.password),
        ]

    def _write_files(self) -> None:
        assert self.conf_path is not None
        if self.conf_path.exists() and not self._started:
            # ``RedisServer.start`` retries a port that was taken meanwhile: it may have been
            # the cluster bus port.
            self.bus_port = _port(self._taken)
        super()._write_files()
        assert self.conf_path is not None
        digest = hashlib.sha256(self._admin_secret.encode()).hexdigest()
        with self.conf_path.open("a") as conf:
            conf.write(f"user {ADMIN_USER} on #{digest} ~* &* +@all\n")

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def admin(self) -> redis.Redis:
        """A client logged in as the admin user on one connection (no retries: a refusal is
        final)."""
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            username=ADMIN_USER,
            password=self.admin_password,
            protocol=2,
            driver_info=None,
            socket_timeout=3,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
            single_connection_client=True,
        )

    def command(self, *args: str | int) -> Any:
        client = self.admin()
        try:
            return client.execute_command(*args)
        finally:
            client.close()

    def node_id(self) -> str:
        return str(self.command("CLUSTER", "MYID"))

    def view(self) -> list[ClusterEntry]:
        """This node's ``CLUSTER NODES``."""
        return [ClusterEntry.parse(line) for line in str(self.cluster_nodes()).splitlines()]

    def cluster_nodes(self) -> str:
        """The raw ``CLUSTER NODES`` text, as keyturn reads it (redis-py parses the reply
        only when the command is sent as the single word "CLUSTER NODES")."""
        return str(self.command("CLUSTER", "NODES"))

    def cluster_state(self) -> str:
        client = self.admin()
        try:
            return str(client.cluster("INFO").get("cluster_state", ""))
        finally:
            client.close()

    def link_up(self) -> bool:
        client = self.admin()
        try:
            return client.info("replication").get("master_link_status") == "up"
        finally:
            client.close()

    def role(self) -> str:
        return str(self.command("ROLE")[0])


@dataclass(frozen=True)
class ClusterEntry:
    """One line of ``CLUSTER NODES``."""

    node_id: str
    endpoint: str
    flags: frozenset[str]
    master_id: str

    @classmethod
    def parse(cls, line: str) -> ClusterEntry:
        fields = line.split()
        return cls(
            node_id=fields[0],
            endpoint=fields[1].split("@", 1)[0],
            flags=frozenset(fields[2].split(",")),
            master_id=fields[3],
        )

    @property
    def primary(self) -> bool:
        return "master" in self.flags


class RedisClusterNodes:
    """``primaries`` shards of one primary and ``replicas`` replicas each. ``password`` is
    ``default``'s password as the tests last set it (``set_password`` after a reset)."""

    def __init__(
        self,
        *,
        primaries: int = 3,
        replicas: int = 1,
        binary: str | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.binary = binary
        self._taken: set[int] = set()
        self.password = RedisServer.new_password()
        self.admin_password = RedisServer.new_password()
        ADMIN_PASSWORDS.append(self.admin_password)
        self.start_timeout = start_timeout
        self.primaries = [self._node() for _ in range(primaries)]
        self.replicas = [self._node() for _ in range(primaries * replicas)]
        #: Each replica's primary, by the replica's index in ``replicas``.
        self._replica_of = [self.primaries[i % primaries] for i in range(len(self.replicas))]
        self.extra: list[ClusterNode] = []

    def _node(self) -> ClusterNode:
        return ClusterNode(
            password=self.password,
            admin_password=self.admin_password,
            binary=self.binary,
            taken=self._taken,
        )

    @property
    def nodes(self) -> list[ClusterNode]:
        """Every node: the first primaries, then the first replicas, then added nodes."""
        return [*self.primaries, *self.replicas, *self.extra]

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> RedisClusterNodes:
        for node in self.nodes:
            node.start()
        per_primary = SLOTS // len(self.primaries)
        for i, primary in enumerate(self.primaries):
            first = i * per_primary
            last = SLOTS - 1 if i == len(self.primaries) - 1 else first + per_primary - 1
            primary.command("CLUSTER", "ADDSLOTSRANGE", first, last)
        seed = self.primaries[0]
        for node in self.nodes[1:]:
            node.command("CLUSTER", "MEET", "127.0.0.1", seed.port, seed.bus_port)
        self._wait(lambda: self._everyone_knows(self.nodes), "the nodes did not meet")
        for replica, primary in zip(self.replicas, self._replica_of, strict=True):
            replica.command("CLUSTER", "REPLICATE", primary.node_id())
        self.wait_settled()
        return self

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisClusterNodes:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ changes

    def add_node(self, primary: ClusterNode) -> ClusterNode:
        """Start a node with the current ``default`` password, join it to the cluster as a
        further replica of ``primary``, and wait until every node sees it there."""
        node = self._node()
        self.extra.append(node)
        node.start()
        node.command("CLUSTER", "MEET", "127.0.0.1", primary.port, primary.bus_port)
        self._wait(lambda: self._everyone_knows(self.nodes), "the added node was not met")
        node.command("CLUSTER", "REPLICATE", primary.node_id())
        self.wait_settled()
        return node

    def failover(self, replica: ClusterNode) -> ClusterNode:
        """Promote ``replica`` with ``CLUSTER FAILOVER`` (coordinated with its primary); the
        former primary, which becomes its replica, is returned once every node agrees and
        the former primary's link to it is up."""
        old_id = self._primary_id_of(replica)
        former = next(n for n in self.nodes if n.node_id() == old_id)
        replica.command("CLUSTER", "FAILOVER")
        self._wait(
            lambda: replica.role() == "master" and former.role() == "slave",
            "the failover did not happen",
        )
        self.wait_settled()
        return former

    def set_password(self, password: str) -> None:
        """Remember ``default``'s new password (after keyturn reset it)."""
        self.password = password
        for node in self.nodes:
            node.password = password

    def restart(self, node: ClusterNode) -> None:
        """Restart a node (its config, ACL and ``nodes.conf`` kept) and wait until the
        cluster is whole again."""
        node.restart()
        self.wait_settled()

    # ------------------------------------------------------------------ waiting

    def wait_settled(self) -> None:
        """Every node reports ``cluster_state:ok``, sees every node with the same role and
        master as every other node does, and every replica's link is up."""
        self._wait(self._settled, "the cluster did not settle")

    def _settled(self) -> bool:
        views = [{(e.endpoint, e.primary, e.master_id) for e in n.view()} for n in self.nodes]
        if any(view != views[0] for view in views) or len(views[0]) != len(self.nodes):
            return False
        if any("fail" in e.flags or "handshake" in e.flags for n in self.nodes for e in n.view()):
            return False
        if any(n.cluster_state() != "ok" for n in self.nodes):
            return False
        return all(n.link_up() for n in self.nodes if n.role() == "slave")

    def _everyone_knows(self, nodes: list[ClusterNode]) -> bool:
        for node in nodes:
            entries = node.view()
            if len(entries) != len(nodes) or any("handshake" in e.flags for e in entries):
                return False
        return True

    def _primary_id_of(self, replica: ClusterNode) -> str:
        mine = replica.node_id()
        entry = next(e for e in replica.view() if e.node_id == mine)
        return entry.master_id

    def _wait(self, ready: Callable[[], bool], problem: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                if ready():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                tails = "\n".join(f"{n.port}: {n.log_tail(5)}" for n in self.nodes)
                raise RedisServerError(f"{problem} within {self.start_timeout:g} s:\n{tails}")
            time.sleep(0.05)

    # ------------------------------------------------------------------ for assertions

    def primary_of(self, node: ClusterNode) -> ClusterNode:
        """The node ``node`` replicates from now."""
        wanted = self._primary_id_of(node)
        return next(n for n in self.nodes if n.node_id() == wanted)

    def replicates(self, tag: str, timeout: float = 5.0) -> bool:
        """A write on every primary (to a key of a slot it serves) reaches each of its
        replicas within ``timeout`` seconds: replication works, whatever the links say."""
        deadline = time.monotonic() + timeout
        for primary in self.current_primaries():
            key = self._key_served_by(primary, tag)
            primary.command("SET", key, tag)
            for replica in self.current_replicas():
                if self.primary_of(replica).port != primary.port:
                    continue
                client = replica.admin()
                try:
                    client.execute_command("READONLY")
                    while client.get(key) != tag:
                        if time.monotonic() > deadline:
                            return False
                        time.sleep(0.02)
                finally:
                    client.close()
        return True

    def _key_served_by(self, primary: ClusterNode, tag: str) -> str:
        ranges = [
            (int(entry[0]), int(entry[1]))
            for entry in primary.command("CLUSTER", "SLOTS")
            if int(entry[2][1]) == primary.port
        ]
        for n in range(SLOTS):
            key = f"{tag}-{n}"
            slot = int(primary.command("CLUSTER", "KEYSLOT", key))
            if any(first <= slot <= last for first, last in ranges):
                return key
        raise RedisServerError(f"{primary.endpoint} serves no slot")

    def current_primaries(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.role() == "master"]

    def current_replicas(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.role() == "slave"]

    def admin_url(self, node: ClusterNode) -> str:
        """keyturn's admin login on ``node`` (the same user and password on every node)."""
        return node.url(ADMIN_USER, self.admin_password)
