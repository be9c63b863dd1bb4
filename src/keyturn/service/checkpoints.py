"""The one seam where tests inject faults into a running task: named checkpoints.

The worker announces ``before_write_ahead``, ``after_write_ahead``, ``after_apply`` and
``during_verify`` (after the first of the plan's checks passed, the others still to run) as it
passes them. In production nothing listens (``NO_CHECKPOINTS``). The crash and fault suites
start keyturn with ``KEYTURN_FAULT_PAUSE="after_apply=5,..."`` and get ``PausingCheckpoints``,
which sleep there so that a test can SIGKILL the process at exactly that point; the worker's
logic is the same either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Final, Protocol

log = logging.getLogger(__name__)

#: The points a task passes, in order.
POINTS: Final = ("before_write_ahead", "after_write_ahead", "after_apply", "during_verify")


class Checkpoints(Protocol):
    async def reached(self, point: str, task_id: int) -> None: ...


class _Silent:
    async def reached(self, point: str, task_id: int) -> None:
        return None


NO_CHECKPOINTS: Final[Checkpoints] = _Silent()


class PausingCheckpoints:
    """Sleep at the configured points (tests only)."""

    def __init__(self, pauses: Mapping[str, float]) -> None:
        unknown = sorted(set(pauses) - set(POINTS))
        if unknown:
            raise ValueError(f"unknown fault-injection points: {', '.join(unknown)}")
        self._pauses = dict(pauses)

    async def reached(self, point: str, task_id: int) -> None:
        delay = self._pauses.get(point)
        if delay:
            log.warning("fault injection: pausing %.1fs at %s", delay, point)
            await asyncio.sleep(delay)


def checkpoints_for(pauses: Mapping[str, float]) -> Checkpoints:
    return PausingCheckpoints(pauses) if pauses else NO_CHECKPOINTS
