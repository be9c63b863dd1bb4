"""The fault suite prints its counts at the end of the test session."""

from __future__ import annotations

import pytest

#: One line per engine topology, filled by tests/fault/test_fault_suite.py.
REPORT_LINES: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT_LINES:
        terminalreporter.section("fault injection")
        for line in REPORT_LINES:
            terminalreporter.write_line(line)
