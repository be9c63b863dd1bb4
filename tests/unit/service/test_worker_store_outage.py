"""A store outage in the middle of a task: the run does not die with it. It waits for the
store (backing off), reads its row again and resumes it as a restart would; a task the store
says has ended meanwhile is left alone."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from keyturn.core.errors import StoreUnavailable
from keyturn.core.tasks import Task, TaskState
from keyturn.service import worker as worker_module
from keyturn.service.leases import Held
from keyturn.service.plan_runner import Ending
from keyturn.service.worker import Loaded, TaskWorker
from tests.support.fakes import WallClock, fake_task

TASK = fake_task(42, instance_id="crs-outage01", request_id="req-1")


class FlakyStore:
    """``finish_task`` fails while ``down`` counts down; ``get_task`` too, then answers
    ``state``."""

    def __init__(self, down: int, state: TaskState = TaskState.RUNNING) -> None:
        self.down = down
        self.state = state
        self.finished: list[TaskState] = []

    async def get_task(self, tenant_id: str, task_id: int) -> Task:
        if self.down > 0:
            self.down -= 1
            raise StoreUnavailable()
        return replace(TASK, state=self.state)

    async def finish_task(self, task_id: int, *, state: TaskState, **_: Any) -> Task:
        if self.down > 0:
            self.down -= 1
            raise StoreUnavailable()
        self.finished.append(state)
        return replace(TASK, state=state)


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "_STORE_RETRY_FIRST", 0.01)
    monkeypatch.setattr(worker_module, "_STORE_RETRY_MAX", 0.02)


def runner(worker: TaskWorker, runs: list[tuple[TaskState, bool]]) -> None:
    async def run(task: Task, loaded: Loaded | None, lease: Held) -> tuple[Ending, str] | None:
        runs.append((task.state, loaded is not None))
        return Ending(TaskState.SUCCEED, "", ()), "tencent-redis"

    worker._run = run  # type: ignore[method-assign]


async def test_a_task_resumes_once_the_store_is_back() -> None:
    store = FlakyStore(down=3)
    nothing: Any = None
    worker = TaskWorker(store, nothing, WallClock())  # type: ignore[arg-type]
    runs: list[tuple[TaskState, bool]] = []
    runner(worker, runs)
    loaded = Loaded(instance=nothing, password=None)
    outcome = await asyncio.wait_for(worker.submit(TASK, loaded), timeout=10)
    assert outcome.state is TaskState.SUCCEED
    # The first run's finish failed; the row was read again and the task resumed from it.
    assert runs == [(TaskState.PREPARING, True), (TaskState.RUNNING, False)]
    assert store.finished == [TaskState.SUCCEED]


async def test_a_task_that_ended_meanwhile_is_left_alone() -> None:
    store = FlakyStore(down=1, state=TaskState.FAILED)
    nothing: Any = None
    worker = TaskWorker(store, nothing, WallClock())  # type: ignore[arg-type]
    runs: list[tuple[TaskState, bool]] = []
    runner(worker, runs)
    outcome = await asyncio.wait_for(worker.submit(TASK), timeout=10)
    assert outcome.state is TaskState.PREPARING  # not final: this run did not end it
    assert runs == [(TaskState.PREPARING, False)] and store.finished == []
