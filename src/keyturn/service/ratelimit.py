"""Per-tenant, per-action rate limits, as the vendors document them for their APIs.

Each (tenant, vendor action) may be called at most ``limit`` times in each wall-clock second
(Tencent Redis ``ResetPassword`` 20/s, TDSQL 20/s, PostgreSQL ``ResetAccountPassword`` 100/s,
configurable defaults for other changes and for reads). A fixed one-second window is what the
vendors' "N requests per second" means: it lets a burst of N through at once and never accepts
more than N in a second, so under any load the acceptances of one second stay within the limit.
A refused call raises ``RequestThrottled`` and costs nothing else here: one dictionary look-up,
no I/O, no lock, and the counters of other tenants and actions are untouched, so throttling one
of them slows nothing else. Counters live in this process's memory and only for the current
second: at most one per (tenant, action) called in that second, dropped when the next begins,
so memory is bounded by one second's traffic however many tenants and actions there are.
Configured limits (``KEYTURN_RATE_LIMITS``, ``[server.rate_limits]``) win over the documented
ones: an exact action first, then its service's ``service:*``, then ``*`` for everything.
"""

from __future__ import annotations

from collections.abc import Mapping

from keyturn.core.errors import RequestThrottled
from keyturn.core.ports import Clock

#: The vendors' documented limits, per tenant and second (lower-case: actions match any case).
DOCUMENTED_LIMITS: Mapping[str, int] = {
    "redis:resetpassword": 20,
    "tdmysql:resetuserpassword": 20,
    "tdmysql:resetuserspassword": 20,
    "postgres:resetaccountpassword": 100,
}
DEFAULT_WRITE_LIMIT = 20
DEFAULT_READ_LIMIT = 100


class RateLimiter:
    """Count calls per (tenant, action) in fixed one-second windows of ``clock``."""

    def __init__(
        self,
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
        self._clock = clock
        self._configured = configured
        self._default_write = default_write
        self._default_read = default_read
        self._second = -1
        self._counts: dict[tuple[str, str], int] = {}

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

    def take(self, tenant_id: str, action: str, *, mutating: bool) -> None:
        """Count one call; ``RequestThrottled`` past the limit for this second (a refused call
        is not counted: it used nothing)."""
        second = int(self._clock.now().timestamp())
        if second != self._second:
            # A new window: every counter of the previous one is dropped at once.
            self._second, self._counts = second, {}
        key = (tenant_id, action.lower())
        count = self._counts.get(key, 0)
        limit = self.limit(action, mutating=mutating)
        if count >= limit:
            raise RequestThrottled(
                f"{action} is limited to {limit} requests per second for each account; "
                "retry in the next second"
            )
        self._counts[key] = count + 1

    def __len__(self) -> int:
        """Counters held for the current window (for tests and monitoring)."""
        return len(self._counts)
