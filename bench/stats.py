"""Percentiles, ratios against baselines, the printed table, JSON and the latency plot."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    """p50/p90/p99 and mean, in milliseconds (``values`` are seconds)."""
    return {
        "n": len(values),
        "p50_ms": percentile(values, 50) * 1e3,
        "p90_ms": percentile(values, 90) * 1e3,
        "p99_ms": percentile(values, 99) * 1e3,
        "mean_ms": statistics.fmean(values) * 1e3 if values else float("nan"),
    }


@dataclass
class Check:
    """One figure against its target: ``ratio`` compared to ``target`` with ``op``."""

    scenario: str
    metric: str
    ratio: float
    target: float
    op: str  # "<=" or ">="
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.ratio <= self.target if self.op == "<=" else self.ratio >= self.target


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)

    def table(self) -> str:
        rows = [f"{'scenario':<22} {'metric':<44} {'ratio':>8} {'target':>9}  result"]
        for c in self.checks:
            rows.append(
                f"{c.scenario:<22} {c.metric:<44} {c.ratio:>8.2f} {c.op + format(c.target, 'g'):>9}"
                f"  {'PASS' if c.passed else 'MISS'}"
            )
            if c.detail:
                rows.append(f"{'':<22}   {c.detail}")
        return "\n".join(rows)

    def write(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        payload = {
            "checks": [asdict(c) | {"passed": c.passed} for c in self.checks],
            "data": self.data,
        }
        (out / "latest.json").write_text(json.dumps(payload, indent=2, default=str))
        self._plot(out / "latency.png")

    def _plot(self, path: Path) -> None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return
        if not self.samples:
            return
        fig, ax = plt.subplots(figsize=(9, 5))
        for name, values in self.samples.items():
            ms = sorted(v * 1e3 for v in values)
            ax.plot(ms, [i / len(ms) for i in range(len(ms))], label=name)
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log scale)")
        ax.set_ylabel("cumulative fraction")
        ax.set_title("keyturn reset latency vs raw and raw durable engine resets (same run)")
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
