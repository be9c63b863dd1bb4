"""What a reset's health probe saw of each node's role, for the task's ``discover`` that follows.

Every task asks each node its role again (``discover``: a PostgreSQL standby, a Redis replica
and its master), yet a reset's health probe has just read that a few milliseconds before, in
the round trip it makes anyway. ``ProbedRoles`` keeps what a probe saw, by pool key, for
``PROBED_FRESH`` seconds and one taker, so that ``discover`` uses it instead of asking once
more; a second ``discover``, or one after that time, asks the node. That is no staler a view
than ``discover``'s own: either may be overtaken by a failover before the change, which is why
the change re-reads the role on the node it writes and its checks ask every node again.
Memory is bounded (``_MOST_PROBED`` nodes, the oldest go first). Pure standard library.
"""

from __future__ import annotations

import time
from typing import Final, Generic, TypeVar

#: A probe's view of a node's role serves one ``discover`` within this many seconds.
PROBED_FRESH: Final = 1.0
#: The most nodes whose probed role is kept (the oldest go first).
_MOST_PROBED: Final = 4096

R = TypeVar("R")


class ProbedRoles(Generic[R]):
    """The role each node (by pool key) had when it was last probed, for ``fresh`` seconds
    and one taker."""

    def __init__(self, fresh: float = PROBED_FRESH) -> None:
        self._fresh = fresh
        self._seen: dict[str, tuple[R, float]] = {}

    def __repr__(self) -> str:
        return f"ProbedRoles({len(self._seen)} kept)"

    def record(self, key: str, role: R) -> None:
        self._seen.pop(key, None)
        while len(self._seen) >= _MOST_PROBED:
            del self._seen[next(iter(self._seen))]
        self._seen[key] = (role, time.monotonic())

    def take(self, key: str) -> R | None:
        """What the probe saw, if it is fresh and not taken yet; else None (ask the node)."""
        seen = self._seen.pop(key, None)
        if seen is None or time.monotonic() - seen[1] > self._fresh:
            return None
        return seen[0]
