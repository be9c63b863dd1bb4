"""``keyturn.engines.probed_roles``: what a probe saw of a node's role, kept for the
``discover`` that follows (no I/O; the PostgreSQL and Redis replication contract tests prove
it on real servers)."""

from __future__ import annotations

from redis.exceptions import ResponseError

from keyturn.core.model import EngineKind, Node, parse_node_url
from keyturn.engines.admin_pool import pool_key
from keyturn.engines.probed_roles import ProbedAccounts, ProbedRoles
from keyturn.engines.redis import RedisEngine


def test_a_probed_role_serves_one_taker() -> None:
    probed: ProbedRoles[bool] = ProbedRoles(fresh=60.0)
    probed.put("pg-1@127.0.0.1:5432", True)
    assert probed.take("pg-1@127.0.0.1:5432") is True
    assert probed.take("pg-1@127.0.0.1:5432") is None
    assert probed.take("pg-1@127.0.0.1:5433") is None


def test_the_latest_probe_counts() -> None:
    probed: ProbedRoles[bool] = ProbedRoles(fresh=60.0)
    probed.put("pg-1@127.0.0.1:5432", True)
    probed.put("pg-1@127.0.0.1:5432", False)
    assert probed.take("pg-1@127.0.0.1:5432") is False


def test_a_stale_probe_is_not_used() -> None:
    probed: ProbedRoles[bool] = ProbedRoles(fresh=-1.0)
    probed.put("pg-1@127.0.0.1:5432", False)
    assert probed.take("pg-1@127.0.0.1:5432") is None


def test_a_redis_probe_keeps_only_a_role_reply_it_can_read() -> None:
    """What ``ROLE`` answered a probe: a master, a replica naming its master; a refusal or a
    reply it cannot read leaves nothing, and ``discover`` asks the node itself."""
    engine = RedisEngine()
    node = Node(
        instance_id="crs-unit0001",
        ordinal=0,
        address=parse_node_url("redis://kadmin:pw@127.0.0.1:6390", EngineKind.REDIS),
    )
    key = pool_key(node)
    engine._remember_role(node, [b"master", 0, []])
    assert engine.probed.take(key) == ""
    engine._remember_role(node, [b"slave", b"127.0.0.1", 6391, b"connected", 0])
    assert engine.probed.take(key) == "127.0.0.1:6391"
    for unreadable in (ResponseError("NOPERM"), [b"slave"], [b"slave", b"h", b"port?"], None):
        engine._remember_role(node, unreadable)
        assert engine.probed.take(key) is None


def test_a_probed_account_serves_one_snapshot_of_that_account_only() -> None:
    accounts: ProbedAccounts[str] = ProbedAccounts(fresh=60.0)
    accounts.put(("pg-1@127.0.0.1:5432", "app"), "SCRAM-SHA-256$4096:kept-verifier")
    assert accounts.take(("pg-1@127.0.0.1:5432", "other")) is None
    assert "kept-verifier" not in repr(accounts)
    assert accounts.take(("pg-1@127.0.0.1:5432", "app")) == "SCRAM-SHA-256$4096:kept-verifier"
    assert accounts.take(("pg-1@127.0.0.1:5432", "app")) is None
