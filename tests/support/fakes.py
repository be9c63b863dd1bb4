"""In-memory stand-ins shared by unit tests: a settable clock, the store's replay memory, a
gate that lets everything through, and a task-shaped value for stubbed resets.

They implement the same ports as the real adapters (``Clock``, ``ReplayRepo``) or the slice of
a service a dialect calls (``Gate.run`` / ``Gate.rejected``), so a unit test exercises the real
code on either side of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from keyturn.core.errors import DomainError
from keyturn.service.context import Answer, Caller
from keyturn.service.replay import ReplayGuard


class FakeClock:
    """A clock that stands still until told to move (UTC)."""

    def __init__(self, moment: datetime | None = None) -> None:
        self.moment = moment or datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


class WallClock:
    """The real time (for dialect tests whose signatures carry the current time)."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class MemoryReplay:
    """The ``ReplayRepo`` port in a dict (the store's behaviour: no eviction, expiry)."""

    def __init__(self) -> None:
        self.expiry: dict[tuple[str, str], datetime] = {}

    async def remember_nonce(
        self, scope: str, nonce: str, *, expires_at: datetime, now: datetime
    ) -> bool:
        known = self.expiry.get((scope, nonce))
        if known is not None and known > now:
            return False
        self.expiry[(scope, nonce)] = expires_at
        return True

    async def purge_nonces(self, now: datetime) -> int:
        expired = [key for key, until in self.expiry.items() if until <= now]
        for key in expired:
            del self.expiry[key]
        return len(expired)


def memory_replay_guard(clock: Any) -> ReplayGuard:
    return ReplayGuard(MemoryReplay(), clock)


@dataclass
class PassthroughGate:
    """``Gate`` with nothing to refuse (authorization and audit are tested on their own):
    runs the pipeline's admission check (the replay check), then the action. ``error``, when
    set, is what the gate refuses every call with; refusals before the gate are recorded."""

    error: Exception | None = None
    gated: int = 0
    refusals: list[dict[str, Any]] = field(default_factory=list)

    async def run(
        self,
        caller: Caller,
        info: Any,
        execute: Callable[[Caller], Awaitable[Answer]],
        vendor_code: Callable[[DomainError], str],
        *,
        admit: Callable[[], Awaitable[None]] | None = None,
    ) -> Answer:
        self.gated += 1
        if self.error is not None:
            raise self.error
        if admit is not None:
            await admit()
        return await execute(replace(caller))

    async def rejected(self, caller: Caller, **fields: Any) -> None:
        self.refusals.append({"caller": caller, "tenant": caller.tenant_id, **fields})


@dataclass(frozen=True)
class QueuedTask:
    """What a stubbed reset answers with: a task id."""

    id: int = 7
