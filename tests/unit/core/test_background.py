"""``keyturn.core.background``: keeping and stopping background tasks (no I/O)."""

from __future__ import annotations

import asyncio

import pytest

from keyturn.core.background import keep, stop


async def forever() -> None:
    while True:
        await asyncio.sleep(3600)


async def test_a_kept_task_is_held_until_it_is_done() -> None:
    running: set[asyncio.Task[None]] = set()
    release = asyncio.Event()

    async def until_released() -> None:
        await release.wait()

    task = keep(asyncio.create_task(until_released()), running)
    assert running == {task}
    release.set()
    await task
    await asyncio.sleep(0)  # done callbacks run on the next loop iteration
    assert running == set()


async def test_stop_cancels_and_waits_until_the_task_has_ended() -> None:
    loops = [asyncio.create_task(forever()) for _ in range(3)]
    await stop(*loops)
    assert all(loop.cancelled() for loop in loops)
    await stop(None)  # nothing to stop


async def test_an_error_the_task_ended_with_is_raised_after_every_task_ended() -> None:
    async def broken() -> None:
        raise RuntimeError("the loop broke")

    failed = asyncio.create_task(broken())
    await asyncio.sleep(0)
    other = asyncio.create_task(forever())
    with pytest.raises(RuntimeError, match="the loop broke"):
        await stop(failed, other)
    assert other.cancelled()


async def test_a_cancellation_of_the_caller_is_not_swallowed() -> None:
    """The task takes its time to end (it cleans up); the caller, cancelled meanwhile, is
    cancelled: ``suppress(CancelledError)`` around the await would have swallowed that."""
    cleaned = asyncio.Event()

    async def slow_to_end() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.05)
            cleaned.set()

    loop = asyncio.create_task(slow_to_end())
    await asyncio.sleep(0)
    stopper = asyncio.create_task(stop(loop))
    await asyncio.sleep(0.01)
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    await asyncio.wait_for(cleaned.wait(), 1.0)
