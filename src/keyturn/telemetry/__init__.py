"""Observability adapters wired by the composition root: Prometheus metrics
(``keyturn.telemetry.prometheus``) behind the ``keyturn.core.metrics`` port. Imports only
``keyturn.core`` and the metrics library."""
