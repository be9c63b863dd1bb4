"""The fault harness's Redis topology: a primary and two replicas that log in to it as
``default`` (the account keyturn administers them with, and the one every trial resets through
the official Tencent SDK: ``ResetPassword``, then ``DescribeTaskInfo`` until it ends), watched by
a Redis Sentinel that must always hold the password the task reports.

The sentinel fails over for real (down-after about a second): the primary is whichever node it
names now, never assumed to be the first. ``stop_primary`` stops the current primary and
``wait_promoted`` waits until the sentinel promoted another node; the old primary, started
again, comes back as a replica of the new one (the sentinel reconfigures it; the invariant check
does the same at once rather than wait for the sentinel's next look, as the sentinel would:
``REPLICAOF`` and ``CONFIG REWRITE``). It must then log in to the new primary with the
``masterauth`` keyturn gave it: replication stays authenticated, or the check reports it."""

from __future__ import annotations

import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

from tests.support.keyturn_server import KeyturnServer
from tests.support.redis_replication import password_violations, replicated
from tests.support.redis_sentinel import RedisSentinel
from tests.support.redis_server import RedisServer
from tests.support.sdk import redis_sdk, reset, wait_task

#: How long ``wait_promoted`` waits for the sentinel to promote another node.
FAILOVER_WAIT = 15.0


def _client(server: RedisServer, password: str) -> redis.Redis:
    return redis.Redis(
        port=server.port,
        password=password,
        protocol=2,
        driver_info=None,
        socket_timeout=3,
        retry=Retry(NoBackoff(), 0),
    )


class RedisCluster:
    name = "redis primary + 2 replicas + sentinel"

    def __init__(self, nodes: list[RedisServer], instance_id: str, sentinel: RedisSentinel) -> None:
        self.nodes = nodes
        self.sentinel = sentinel
        self.instance_id = instance_id
        self.password = nodes[0].password or ""
        self._pending = self.password

    # ------------------------------------------------------------------ resets

    def reset(self, server: KeyturnServer, new: str) -> str:
        return self.finish_reset(server, self.start_reset(server, new))

    def start_reset(self, server: KeyturnServer, new: str) -> object:
        self._pending = new
        try:
            return reset(redis_sdk(server.endpoint), self.instance_id, Password=new)
        except TencentCloudSDKException as exc:
            return exc.get_code()

    def finish_reset(self, server: KeyturnServer, handle: object) -> str:
        if not isinstance(handle, int):
            return f"refused:{handle}"
        info = wait_task(redis_sdk(server.endpoint), handle, timeout=120)
        return str(info.Status)

    # ------------------------------------------------------------------ faults

    def node_count(self) -> int:
        return len(self.nodes)

    def stop_node(self, index: int) -> None:
        self.nodes[index].stop()

    def start_node(self, index: int) -> None:
        self.nodes[index].start()

    def primary(self) -> RedisServer:
        """The node the sentinel names as the master now (the first node if it cannot say)."""
        try:
            port = self.sentinel.primary_port()
        except redis.RedisError:
            return self.nodes[0]
        return next((n for n in self.nodes if n.port == port), self.nodes[0])

    def stop_primary(self) -> int:
        """Kill the current primary; its index, for ``wait_promoted`` and ``start_node``."""
        old = self.primary()
        old.crash()
        return self.nodes.index(old)

    def wait_promoted(self, index: int) -> None:
        """Wait (bounded) until the sentinel names another node than ``index`` the primary."""
        port = self.nodes[index].port
        deadline = time.monotonic() + FAILOVER_WAIT
        while time.monotonic() < deadline:
            try:
                if self.sentinel.primary_port() != port:
                    return
            except redis.RedisError:
                pass
            time.sleep(0.05)

    def drop_links(self) -> None:
        for password in (self.password, self._pending):
            client = _client(self.primary(), password)
            try:
                client.execute_command("CLIENT", "KILL", "TYPE", "replica")
                return
            except (redis.AuthenticationError, redis.ConnectionError):
                continue
            finally:
                client.close()

    # ------------------------------------------------------------------ invariants

    def violations(self, expected: str, other: str) -> list[str]:
        for node in self.nodes:
            if not node.running:
                node.start()
            node.password = expected
        # The node the sentinel names is the primary as soon as it promoted it; the sentinel's
        # own health (its failover finished, the primary answering) is checked last, and if it
        # promoted another node meanwhile (a failover the trial's outage started), again.
        for _ in range(3):
            primary = self.primary()
            found = self._check(primary, expected, other)
            if self.primary() is primary:
                break
        return found

    def _check(self, primary: RedisServer, expected: str, other: str) -> list[str]:
        found: list[str] = []
        replicas = [node for node in self.nodes if node is not primary]
        for node in replicas:
            self._follow(node, primary, expected)
        found += password_violations(self.nodes, replicas, expected, other, connect=_client)
        if not found and not replicated(
            [primary, *replicas], expected, f"fault-{time.monotonic_ns()}", connect=_client
        ):
            found.append("a write on the primary did not reach every replica")
        if f"auth-pass mymaster {expected}" not in self.sentinel.config_text():
            found.append("the sentinel does not hold the password the task reports")
        elif not self.sentinel.wait_settled():
            found.append("the sentinel does not see the primary as healthy")
        return found

    @staticmethod
    def _follow(node: RedisServer, primary: RedisServer, password: str) -> None:
        """Make ``node`` a replica of ``primary`` if it is not one yet (an old primary that
        came back), as the sentinel does when it sees it."""
        client = _client(node, password)
        try:
            info = client.info("replication")
            if info.get("role") == "slave" and int(info.get("master_port", 0)) == primary.port:
                return
            client.execute_command("REPLICAOF", "127.0.0.1", str(primary.port))
            client.execute_command("CONFIG", "REWRITE")
        except redis.RedisError:
            # It refuses the password: the login checks below report that.
            return
        finally:
            client.close()
