"""The fault suite prints its counts at the end of the test session."""

from __future__ import annotations

import pytest

from tests.support.fault_report import REPORT_LINES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT_LINES:
        terminalreporter.section("fault injection")
        for line in REPORT_LINES:
            terminalreporter.write_line(line)
