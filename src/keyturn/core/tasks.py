"""Durable tasks: what a reset is, its states, its per-node steps and the legal transitions.

A task is created ``preparing`` with its pending password sealed in the store. Before any engine
is touched the worker writes ahead (previous credential snapshots, sealed) and moves it to
``running``; it ends ``succeed`` only after every node verified the new credential, otherwise
``failed`` after rolling back. Final tasks hold no secret material.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime

from keyturn.core.errors import InternalError


class TaskState(enum.StrEnum):
    """The state machine; the values are Tencent's DescribeTaskInfo statuses."""

    PREPARING = "preparing"
    RUNNING = "running"
    SUCCEED = "succeed"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (TaskState.SUCCEED, TaskState.FAILED)


_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.PREPARING: frozenset({TaskState.RUNNING, TaskState.FAILED}),
    TaskState.RUNNING: frozenset({TaskState.SUCCEED, TaskState.FAILED}),
    TaskState.SUCCEED: frozenset(),
    TaskState.FAILED: frozenset(),
}

ACTIVE_STATES = (TaskState.PREPARING, TaskState.RUNNING)


def check_transition(current: TaskState, target: TaskState) -> None:
    """Raise if ``current -> target`` is not a legal move."""
    if target not in _TRANSITIONS[current]:
        raise InternalError(f"illegal task transition {current} -> {target}")


class TaskKind(enum.StrEnum):
    """What a task does to its account."""

    RESET_PASSWORD = "reset_password"
    SET_PASSWORD_FREE = "set_password_free"
    #: Overlap rotation, first half: the new password joins the current one
    #: (``keyturn.core.plans.ChangeMode.ADD``).
    ADD_PASSWORD = "add_password"
    #: Overlap rotation, second half: only the task's password stays (``KEEP_ONLY``).
    DROP_OLD_PASSWORDS = "drop_old_passwords"


#: The two halves of an overlap rotation.
OVERLAP_KINDS = frozenset({TaskKind.ADD_PASSWORD, TaskKind.DROP_OLD_PASSWORDS})


class StepPhase(enum.StrEnum):
    """Where one node stands within a task."""

    PENDING = "pending"
    APPLIED = "applied"
    VERIFIED = "verified"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStep:
    """One node's progress; ``note`` is human text without secrets (e.g. persistence warnings)."""

    ordinal: int
    endpoint: str
    phase: StepPhase = StepPhase.PENDING
    note: str = ""

    def to(self, phase: StepPhase, note: str | None = None) -> TaskStep:
        return replace(self, phase=phase, note=self.note if note is None else note)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewTask:
    """A task about to be queued."""

    tenant_id: str
    instance_id: str
    account: str
    kind: TaskKind
    request_id: str
    steps: tuple[TaskStep, ...]

    @property
    def lock_key(self) -> str:
        """At most one active task per instance account (enforced by the store)."""
        return lock_key(self.instance_id, self.account)


def lock_key(instance_id: str, account: str) -> str:
    return f"{instance_id}\x1f{account}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """A queued, running or finished task."""

    id: int
    tenant_id: str
    instance_id: str
    account: str
    kind: TaskKind
    state: TaskState
    message: str
    request_id: str
    steps: tuple[TaskStep, ...]
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: When the last node verified the new credential (keyturn's own clock).
    verified_at: datetime | None = None
    #: The node holding the task's lease (``keyturn.core.cluster``), if any.
    owner: str | None = None
    #: Incremented at every claim: a write naming an older fence is refused.
    fence: int = 0
    lease_until: datetime | None = None
    #: The ``DomainError`` code behind a failure, when there was one.
    error_code: str | None = None
    #: Per node endpoint, the connection-id watermark taken once the change was applied and
    #: verified (``keyturn.core.engine_ports.SessionMark`` text), on engines that need one.
    session_marks: tuple[tuple[str, str], ...] = ()
