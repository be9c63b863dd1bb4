"""Per-tenant, per-action rate limits, as the vendors document them for their APIs, held
across every node on the store.

Each (tenant, vendor action) may be called at most ``limit`` times in each wall-clock second
(Tencent Redis ``ResetPassword`` 20/s, TDSQL 20/s, PostgreSQL ``ResetAccountPassword`` 100/s,
configurable defaults for other changes and for reads). A fixed one-second window is what the
vendors' "N requests per second" means: it lets a burst of N through at once and never accepts
more than N in a second, so under any load the acceptances of one second stay within the limit.

The counters are the store's (``RateRepo``): one atomic increment-and-check per accepted call,
so all nodes (and ``serve --workers`` processes) together accept at most the limit per second;
where the nodes' clocks differ, a window's edge may let one more through. In front of it sits
a fast path that can only refuse, never admit: once this process has seen the window full (the
store refused, or this process alone already accepted ``limit`` calls), the rest of that
second is refused from memory, without I/O. So a flood costs the store about ``limit + 1``
writes per second, whatever its size, and throttling one tenant or action slows nothing else.
A refused call is not counted anywhere. Local memory holds at most one entry per (tenant,
action) called in the current second; the store's windows of past seconds are purged every
``PURGE_EVERY`` seconds. Configured limits (``KEYTURN_RATE_LIMITS``, ``[server.rate_limits]``)
win over the documented ones: an exact action first, then its service's ``service:*``, then
``*`` for everything.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Final

from keyturn.core.errors import DomainError, RequestThrottled
from keyturn.core.ports import Clock
from keyturn.core.store_ports import RateRepo

#: The vendors' documented limits, per tenant and second (lower-case: actions match any case).
DOCUMENTED_LIMITS: Mapping[str, int] = {
    "redis:resetpassword": 20,
    "tdmysql:resetuserpassword": 20,
    "tdmysql:resetuserspassword": 20,
    "postgres:resetaccountpassword": 100,
    # Tencent SSM's documented limits (API Category page), per action.
    "ssm:createproductsecret": 20,
    "ssm:getsecretvalue": 300,
    "ssm:rotateproductsecret": 20,
    "ssm:describeasyncrequestinfo": 20,
    "ssm:updaterotationstatus": 20,
    "ssm:describerotationdetail": 20,
    "ssm:describerotationhistory": 20,
    "ssm:describesecret": 40,
    "ssm:listsecrets": 30,
    "ssm:deletesecret": 50,
    "ssm:getservicestatus": 50,
    "ssm:describesupportedproducts": 20,
}
log = logging.getLogger(__name__)

DEFAULT_WRITE_LIMIT = 20
DEFAULT_READ_LIMIT = 100
#: Seconds between two purges of the store's past windows (by this process).
PURGE_EVERY: Final = 10
#: A local count at this value means the store refused: the window is full everywhere.
_FULL: Final = -1


class RateLimiter:
    """Count calls per (tenant, action) in fixed one-second windows of ``clock``, in ``repo``."""

    def __init__(
        self,
        repo: RateRepo,
        clock: Clock,
        *,
        limits: Mapping[str, int] | None = None,
        default_write: int = DEFAULT_WRITE_LIMIT,
        default_read: int = DEFAULT_READ_LIMIT,
    ) -> None:
        configured = {name.strip().lower(): value for name, value in (limits or {}).items()}
        for name, value in (*configured.items(), ("write", default_write), ("read", default_read)):
            if value < 0:
                raise ValueError(f"rate limit {name}={value}: limits are 0 or more per second")
        self._repo = repo
        self._clock = clock
        self._configured = configured
        self._default_write = default_write
        self._default_read = default_read
        self._second = -1
        #: Calls this process had accepted in the current second, or ``_FULL``.
        self._counts: dict[tuple[str, str], int] = {}
        self._purged = -1

    def limit(self, action: str, *, mutating: bool) -> int:
        """Calls of ``action`` a tenant may make per second (0 refuses every call)."""
        name = action.lower()
        service = name.split(":", 1)[0]
        for candidate in (name, f"{service}:*", "*"):
            if candidate in self._configured:
                return self._configured[candidate]
        documented = DOCUMENTED_LIMITS.get(name)
        if documented is not None:
            return documented
        return self._default_write if mutating else self._default_read

    async def take(
        self, tenant_id: str, action: str, *, mutating: bool, at: datetime | None = None
    ) -> None:
        """Count one call in the window of ``at`` (default: now); ``RequestThrottled`` past
        the limit for that second (a refused call is not counted: it used nothing). A store
        failure is the store's ``InternalError``: a call that cannot be counted is not
        accepted."""
        second = int((at or self._clock.now()).timestamp())
        if second != self._second:
            # A new window: every local counter of the previous one is dropped at once.
            self._second, self._counts = second, {}
            if second - self._purged >= PURGE_EVERY:
                self._purged = second
                await self._purge(second - 1)
        name = action.lower()
        key = (tenant_id, name)
        limit = self.limit(action, mutating=mutating)
        count = self._counts.get(key, 0)
        # The fast path only refuses: the store's count is never below this process's.
        if count == _FULL or count >= limit:
            raise _throttled(action, limit)
        if not await self._repo.count_call(tenant_id, name, second, limit):
            if self._second == second:
                self._counts[key] = _FULL
            raise _throttled(action, limit)
        if self._second == second and self._counts.get(key, 0) != _FULL:
            self._counts[key] = self._counts.get(key, 0) + 1

    async def _purge(self, before: int) -> None:
        try:
            await self._repo.purge_rate_windows(before)
        except DomainError:
            # Past windows only take room; the next purge removes them.
            log.warning("past rate-limit windows could not be purged")

    def __len__(self) -> int:
        """Counters held for the current window (for tests and monitoring)."""
        return len(self._counts)


def _throttled(action: str, limit: int) -> RequestThrottled:
    return RequestThrottled(
        f"{action} is limited to {limit} requests per second for each account; "
        "retry in the next second"
    )
