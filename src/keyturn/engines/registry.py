"""The engine registry: maps an ``EngineKind`` to its driver and owns the drivers' lifetimes.

This is the one place that switches on the engine kind. Each driver is built on first use with
the registry's per-operation timeout and then shared, so that its pooled admin connections are
shared too. ``close()`` closes every driver built so far. The registry satisfies the
``keyturn.core.engine_ports.EngineRegistry`` protocol. With ``metrics``, each driver is wrapped in a
``MeasuredEngine`` that times its operations. This module imports only ``keyturn.core`` and the
adapters in ``keyturn.engines``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Final

from keyturn.core.engine_ports import Engine
from keyturn.core.errors import UnsupportedFeature
from keyturn.core.metrics import Metrics
from keyturn.core.model import EngineKind
from keyturn.engines.base import DEFAULT_TIMEOUT, check_timeout
from keyturn.engines.measured import MeasuredEngine

log = logging.getLogger(__name__)


# Each driver module is imported on first use: a server whose inventory has no PostgreSQL or
# MySQL instance never loads psycopg or aiomysql (several MB of resident memory each).
def _redis(timeout: float) -> Engine:
    from keyturn.engines.redis import RedisEngine

    return RedisEngine(timeout=timeout)


def _postgres(timeout: float) -> Engine:
    from keyturn.engines.postgres import PostgresEngine

    return PostgresEngine(timeout=timeout)


def _mysql(timeout: float) -> Engine:
    from keyturn.engines.mysql import MySQLEngine

    return MySQLEngine(timeout=timeout)


#: Engine kind -> driver factory taking the per-operation timeout in seconds.
FACTORIES: Final[Mapping[EngineKind, Callable[[float], Engine]]] = {
    EngineKind.REDIS: _redis,
    EngineKind.POSTGRES: _postgres,
    EngineKind.MYSQL: _mysql,
}


class EngineRegistry:
    """Engine kind -> driver. ``timeout`` bounds every single engine operation, in seconds."""

    def __init__(
        self,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        factories: Mapping[EngineKind, Callable[[float], Engine]] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._timeout = check_timeout(timeout)
        self._metrics = metrics
        self._factories = dict(FACTORIES if factories is None else factories)
        self._engines: dict[EngineKind, Engine] = {}

    @property
    def timeout(self) -> float:
        return self._timeout

    def engine(self, kind: EngineKind) -> Engine:
        """The shared driver for ``kind``; ``UnsupportedFeature`` if keyturn has none."""
        found = self._engines.get(kind)
        if found is None:
            factory = self._factories.get(kind)
            if factory is None:
                raise UnsupportedFeature(f"keyturn has no driver for the {kind} engine")
            found = factory(self._timeout)
            if self._metrics is not None:
                found = MeasuredEngine(found, self._metrics)
            self._engines[kind] = found
        return found

    async def close(self) -> None:
        """Close every driver built so far; the registry can be used again afterwards."""
        engines, self._engines = self._engines, {}
        for kind, engine in engines.items():
            try:
                await engine.close()
            except Exception as exc:  # one driver's failure must not leak the others
                log.warning("closing the %s engine failed (%s)", kind, type(exc).__name__)
