"""Per-tenant, per-action rate limits, as the vendors document them for their APIs.

Each (tenant, vendor action) may be called at most ``limit`` times in each wall-clock second
(Tencent Redis ``ResetPassword`` 20/s, TDSQL 20/s, PostgreSQL ``ResetAccountPassword`` 100/s,
configurable defaults for other changes and for reads). A fixed one-second window is what the
vendors' "N requests per second" means, lets a burst of N through at once, and never accepts
more than N in a second; a refused call raises ``RequestThrottled`` and costs nothing else.
Counters live in this process's memory and only for the current second.
"""

from __future__ import annotations

from collections.abc import Mapping

from keyturn.core.errors import RequestThrottled
from keyturn.core.ports import Clock

#: The vendors' documented limits, per tenant and second.
DOCUMENTED_LIMITS: Mapping[str, int] = {
    "redis:ResetPassword": 20,
    "tdmysql:ResetUserPassword": 20,
    "tdmysql:ResetUsersPassword": 20,
    "postgres:ResetAccountPassword": 100,
}
DEFAULT_WRITE_LIMIT = 20
DEFAULT_READ_LIMIT = 100


class RateLimiter:
    def __init__(
        self,
        clock: Clock,
        *,
        limits: Mapping[str, int] | None = None,
        default_write: int = DEFAULT_WRITE_LIMIT,
        default_read: int = DEFAULT_READ_LIMIT,
    ) -> None:
        self._clock = clock
        self._limits = {k.lower(): v for k, v in {**DOCUMENTED_LIMITS, **(limits or {})}.items()}
        self._default_write = default_write
        self._default_read = default_read
        self._second = -1
        self._counts: dict[tuple[str, str], int] = {}

    def limit(self, action: str, *, mutating: bool) -> int:
        everything = self._limits.get("*")
        if everything is not None:
            return everything
        found = self._limits.get(action.lower())
        if found is not None:
            return found
        return self._default_write if mutating else self._default_read

    def take(self, tenant_id: str, action: str, *, mutating: bool) -> None:
        """Count one call; ``RequestThrottled`` past the limit for this second."""
        second = int(self._clock.now().timestamp())
        if second != self._second:
            self._second, self._counts = second, {}
        key = (tenant_id, action.lower())
        count = self._counts.get(key, 0)
        limit = self.limit(action, mutating=mutating)
        if count >= limit:
            raise RequestThrottled(f"{action} is limited to {limit} requests per second")
        self._counts[key] = count + 1
