from __future__ import annotations

import pytest

from keyturn.core.errors import InternalError
from keyturn.core.tasks import TaskState, check_transition


def test_legal_transitions() -> None:
    check_transition(TaskState.PREPARING, TaskState.RUNNING)
    check_transition(TaskState.RUNNING, TaskState.SUCCEED)
    check_transition(TaskState.RUNNING, TaskState.FAILED)
    check_transition(TaskState.PREPARING, TaskState.FAILED)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (TaskState.PREPARING, TaskState.SUCCEED),
        (TaskState.SUCCEED, TaskState.FAILED),
        (TaskState.FAILED, TaskState.RUNNING),
        (TaskState.RUNNING, TaskState.PREPARING),
    ],
)
def test_illegal_transitions(current: TaskState, target: TaskState) -> None:
    with pytest.raises(InternalError):
        check_transition(current, target)
