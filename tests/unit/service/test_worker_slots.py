"""The worker's per-instance limit: at most ``instance_concurrency`` tasks of one instance run
at once, other instances are not held up, and the table forgets idle instances."""

from __future__ import annotations

import asyncio
from typing import Any

from keyturn.service.worker import TaskWorker
from tests.support.fakes import WallClock


async def test_per_instance_limit() -> None:
    nothing: Any = None
    worker = TaskWorker(nothing, nothing, WallClock(), max_concurrency=10, instance_concurrency=2)
    running: dict[str, int] = {"a": 0, "b": 0}
    peak: dict[str, int] = {"a": 0, "b": 0}

    async def job(instance: str) -> None:
        async with worker._instance_slot(instance):
            running[instance] += 1
            peak[instance] = max(peak[instance], running[instance])
            await asyncio.sleep(0.01)
            running[instance] -= 1

    await asyncio.gather(*(job("a") for _ in range(6)), *(job("b") for _ in range(2)))
    assert peak == {"a": 2, "b": 2}
    assert worker._instance_slots == {}
