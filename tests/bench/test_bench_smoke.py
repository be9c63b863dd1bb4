"""A seconds-long run of the benchmark suite so it cannot rot. It asserts that every scenario
produced its figures, never how fast they are (the machine is shared and noisy)."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest

from bench import run

pytestmark = pytest.mark.engine


def test_quick_benchmark_produces_every_figure(tmp_path: Path) -> None:
    report = asyncio.run(run.main(quick=True, out=tmp_path))
    assert "errors" not in report.data, report.data.get("errors")
    scenarios = {check.scenario.split()[0] for check in report.checks}
    assert scenarios == {"1", "2", "3", "4", "5", "6", "7", "8"}
    assert all(math.isfinite(check.ratio) for check in report.checks)
    written = json.loads((tmp_path / "latest.json").read_text())
    assert len(written["checks"]) == len(report.checks)
    assert (tmp_path / "latency.png").stat().st_size > 0
    assert "PASS" in report.table() or "MISS" in report.table()
