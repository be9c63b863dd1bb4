"""The metrics port: what the service, engine and store layers record, without knowing how.

The composition root (``keyturn.bootstrap``) hands the layers a ``Metrics``; the Prometheus
implementation lives in ``keyturn.telemetry.prometheus``, so nothing below the composition root
imports a metrics library. ``NO_METRICS`` records nothing (tests, CLI commands).

Every argument that becomes a label must come from a bounded set: a vendor name, a routed
(known) action or ``"unknown"``, a vendor error code from keyturn's own tables, a product or
engine kind, a task state, an operation name written in keyturn's code, an error class name of
``keyturn.core.errors``. Never a client-chosen string, an endpoint, an account or a secret:
each label value is a time series kept for the life of the process.
"""

from __future__ import annotations

from typing import Final, Protocol

#: The ``action`` label of a call whose action is not one keyturn routes (a client's string).
UNKNOWN_ACTION: Final = "unknown"
#: The ``code`` label of a call answered without an error.
OK_CODE: Final = "OK"
#: The ``code`` label of a call that never got an answer (cancelled: a shutdown).
INTERRUPTED: Final = "Interrupted"
#: ``refused(reason=...)``: over the tenant's rate limit, a replayed signed request.
RATE_LIMITED: Final = "rate_limit"
REPLAYED: Final = "replay"


class Metrics(Protocol):
    """Recorders called on hot paths: each must cost about a dict lookup and an add."""

    def api_call(self, vendor: str, action: str, code: str, seconds: float) -> None:
        """One vendor API call answered with ``code`` (``OK_CODE`` for a success)."""
        ...

    def refused(self, vendor: str, reason: str) -> None:
        """A call refused by the rate limit (``RATE_LIMITED``) or as a replay (``REPLAYED``)."""
        ...

    def task_finished(self, product: str, outcome: str, seconds: float) -> None:
        """A task reached its final state ``outcome``, ``seconds`` after it was created."""
        ...

    def engine_op(self, engine: str, op: str, seconds: float, error: str | None) -> None:
        """One engine operation; ``error`` is the ``DomainError`` class name when it failed."""
        ...

    def audit_append(self, seconds: float) -> None: ...

    def store_statement(self, statement: str, seconds: float) -> None:
        """One store statement, ``statement`` its kind (``select``, ``insert``...)."""
        ...


class NoMetrics:
    """Records nothing."""

    def api_call(self, vendor: str, action: str, code: str, seconds: float) -> None:
        pass

    def refused(self, vendor: str, reason: str) -> None:
        pass

    def task_finished(self, product: str, outcome: str, seconds: float) -> None:
        pass

    def engine_op(self, engine: str, op: str, seconds: float, error: str | None) -> None:
        pass

    def audit_append(self, seconds: float) -> None:
        pass

    def store_statement(self, statement: str, seconds: float) -> None:
        pass


NO_METRICS: Final[Metrics] = NoMetrics()
