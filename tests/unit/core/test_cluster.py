"""Pure parts of the cluster model: error codes recorded by one node map back to their domain
error on another (``error_class``), ``LeaseLost`` is an internal error to clients, and
``keyturn nodes`` groups tasks by the node holding them."""

from __future__ import annotations

from datetime import UTC, datetime

from keyturn.core.cluster import HeldTask, NodeRecord, NodeView, nodes_view
from keyturn.core.errors import (
    AccountCannotLogin,
    DomainError,
    InternalError,
    LeaseLost,
    VerificationFailed,
    error_class,
)
from keyturn.core.tasks import TaskState


def test_error_codes_map_back_to_their_classes() -> None:
    assert error_class("VerificationFailed") is VerificationFailed
    assert error_class("AccountCannotLogin") is AccountCannotLogin
    assert error_class("DomainError") is DomainError
    assert error_class("NoSuchCode") is None
    assert error_class(None) is None


def test_a_lost_lease_is_an_internal_error() -> None:
    assert issubclass(LeaseLost, InternalError) and error_class("LeaseLost") is LeaseLost


def test_nodes_view_groups_tasks_by_node_and_keeps_orphans() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    a, b = (NodeRecord(id=n, started_at=at, heartbeat_at=at) for n in ("a", "b"))

    def held(task_id: int, owner: str | None) -> HeldTask:
        return HeldTask(
            id=task_id,
            tenant_id="t",
            instance_id="i",
            state=TaskState.RUNNING,
            owner=owner,
            lease_until=at,
        )

    views = nodes_view([a, b], [held(1, "a"), held(2, "gone"), held(3, None), held(4, "a")])
    assert [(v.node.id if v.node else None, [t.id for t in v.tasks]) for v in views] == [
        ("a", [1, 4]),
        ("b", []),
        (None, [2, 3]),
    ]
    assert nodes_view([a], []) == [NodeView(node=a, tasks=())]
