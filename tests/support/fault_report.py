"""The fault suite's summary: one line per engine topology, filled by its tests and printed at
the end of the session by ``tests/fault/conftest.py``."""

from __future__ import annotations

REPORT_LINES: list[str] = []
