"""Background tasks: keeping one alive until it ends, and stopping one (cancel it, wait until
it has ended, and let only its own cancellation go).

asyncio keeps only a weak reference to a task: one nobody holds may be collected before it
ends. ``keep`` holds it in the caller's set until it is done (the set is also what the caller
waits on at shutdown), the pattern the asyncio documentation gives, in one place.

The loops keyturn runs beside the requests (the metrics publisher, the cluster heartbeat, the
secret schedule, the fleet claimer) are stopped at shutdown by cancelling their task and
waiting for it. The common way to wait, ``with suppress(CancelledError): await task``, also
swallows a cancellation *of the caller* that arrives meanwhile (a shutdown that is itself
cancelled, by its deadline), which then goes on as if nothing had happened. ``stop`` waits
with ``asyncio.wait``, which never raises the task's outcome, so the caller's own cancellation
propagates; an error the task ended with (not its cancellation) is raised, as awaiting it
would. Pure standard library.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

F = TypeVar("F", bound="asyncio.Future[Any]")


def keep(task: F, running: set[F]) -> F:
    """Hold ``task`` in ``running`` until it is done; returns ``task``."""
    running.add(task)
    task.add_done_callback(running.discard)
    return task


async def stop(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel each of ``tasks`` (None: nothing to stop) and wait until all have ended. The
    first error one of them ended with is raised; their cancellation is not."""
    running = [task for task in tasks if task is not None]
    if not running:
        return
    for task in running:
        task.cancel()
    await asyncio.wait(running)
    errors = [task.exception() for task in running if not task.cancelled()]
    for error in errors:
        if error is not None:
            raise error
