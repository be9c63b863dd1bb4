"""Stopping a background task: cancel it, wait until it has ended, and let only its own
cancellation go.

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
from typing import Any


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
