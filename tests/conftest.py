"""Test-suite wiring: shared fixtures, and CI's rule that nothing may be skipped.

In CI (``CI`` set) a skipped test is reported as a failure, so a missing engine can never
pass silently.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.support.fixtures"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which is not allowed: {report.longrepr}"
