"""``python -m bench.run``: start throwaway engines and keyturn servers, run every scenario,
print the table of ratios with their targets, and write ``bench/results/latest.json`` and
``latency.png``. ``--quick`` is the seconds-long smoke run the test suite uses."""

from __future__ import annotations

import argparse
import asyncio
import platform
import tempfile
import time
from pathlib import Path

from bench import scenarios
from bench.stats import Report

RESULTS = Path(__file__).parent / "results"


async def main(quick: bool, out: Path) -> Report:
    report = Report()
    report.data["machine"] = {
        "cpus": __import__("os").cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="keyturn-bench-") as tmp:
        root = Path(tmp)
        if quick:
            await scenarios.reset_latency(root, report, n=30)
            await scenarios.reset_throughput(root, report, seconds=1, clients=4)
            await scenarios.api_overhead(root, report, seconds=1, conns=2)
            await scenarios.fleet_rotation(root, report, count=8, in_flight=4)
            await scenarios.inventory_scale(root, report, big=2000, samples=20)
        else:
            await scenarios.reset_latency(root, report, n=1000)
            await scenarios.reset_throughput(root, report, seconds=20, clients=64)
            await scenarios.api_overhead(root, report, seconds=5)
            await scenarios.fleet_rotation(root, report, count=500)
            await scenarios.inventory_scale(root, report, big=100_000)
    report.data["wall_seconds"] = time.perf_counter() - started
    report.write(out)
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = asyncio.run(main(args.quick, args.out))
    print(result.table())
    print(f"\nwall time {result.data['wall_seconds']:.0f} s; results in {args.out}")
