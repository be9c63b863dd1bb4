"""``keyturn.engines.probed_roles``: what a probe saw of a node's role, kept for the
``discover`` that follows (no I/O; the PostgreSQL and Redis replication contract tests prove
it on real servers)."""

from __future__ import annotations

from keyturn.engines.probed_roles import ProbedRoles


def test_a_probed_role_serves_one_taker() -> None:
    probed: ProbedRoles[bool] = ProbedRoles(fresh=60.0)
    probed.record("pg-1@127.0.0.1:5432", True)
    assert probed.take("pg-1@127.0.0.1:5432") is True
    assert probed.take("pg-1@127.0.0.1:5432") is None
    assert probed.take("pg-1@127.0.0.1:5433") is None


def test_the_latest_probe_counts() -> None:
    probed: ProbedRoles[bool] = ProbedRoles(fresh=60.0)
    probed.record("pg-1@127.0.0.1:5432", True)
    probed.record("pg-1@127.0.0.1:5432", False)
    assert probed.take("pg-1@127.0.0.1:5432") is False


def test_a_stale_probe_is_not_used() -> None:
    probed: ProbedRoles[bool] = ProbedRoles(fresh=-1.0)
    probed.record("pg-1@127.0.0.1:5432", False)
    assert probed.take("pg-1@127.0.0.1:5432") is None
