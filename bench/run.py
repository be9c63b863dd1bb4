"""``python -m bench.run``: start throwaway engines and keyturn servers, run every scenario,
print the table of ratios with their targets, and write ``bench/results/latest.json`` and
``latency.png``. ``--quick`` is the seconds-long smoke run the test suite uses. Scenario 7 is
scenarios 1 and 3 with the keyturn servers' store on a throwaway PostgreSQL 15 (fsync on);
scenario 8 is scenario 2's verified resets/s of ``serve --workers 2`` against ``--workers 1``.
``--store postgres`` runs scenarios 1-3 themselves on that PostgreSQL instead of SQLite."""

from __future__ import annotations

import argparse
import asyncio
import platform
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench import harness, scenarios, sql_scenarios
from bench.stats import Report

RESULTS = Path(__file__).parent / "results"


ALL = ("1", "2", "3", "4", "5", "6", "7", "8")


#: The scenarios whose servers ``--store postgres`` moves onto PostgreSQL.
STORE_SCENARIOS = ("1", "2", "3")


async def _on_postgres(*runs: Callable[[], Awaitable[None]]) -> None:
    """Run ``runs`` with the keyturn servers' store on PostgreSQL, then back to the default."""
    previous = harness.STORES.name
    harness.STORES.use_postgres()
    try:
        for run in runs:
            await run()
    finally:
        if previous == "sqlite":
            harness.STORES.use_sqlite()


async def main(
    quick: bool, out: Path, only: tuple[str, ...] = ALL, store: str = "sqlite"
) -> Report:
    report = Report()
    report.data["store"] = store
    report.data["machine"] = {
        "cpus": __import__("os").cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="keyturn-bench-") as tmp:
        root = Path(tmp)
        runs = {
            "1": lambda: scenarios.reset_latency(root, report, n=30 if quick else 1000),
            "2": lambda: scenarios.reset_throughput(
                root, report, seconds=1 if quick else 20, clients=4 if quick else 64
            ),
            "3": lambda: scenarios.api_overhead(
                root, report, seconds=1 if quick else 5, conns=2 if quick else 8
            ),
            "4": lambda: scenarios.fleet_rotation(
                root, report, count=8 if quick else 500, in_flight=4 if quick else 50
            ),
            "6": lambda: sql_scenarios.sql_latency(root, report, n=20 if quick else 300),
            "7": lambda: _on_postgres(
                lambda: scenarios.reset_latency(root, report, n=20 if quick else 300, scenario="7"),
                lambda: scenarios.api_overhead(
                    root, report, seconds=1 if quick else 5, conns=2 if quick else 8, scenario="7"
                ),
            ),
            # Scenario 2's load (64 clients on 64 instances), the suite's throughput load.
            "8": lambda: scenarios.workers_throughput(
                root, report, seconds=1 if quick else 10, clients=4 if quick else 64
            ),
            "5": lambda: scenarios.inventory_scale(
                root, report, big=2000 if quick else 100_000, samples=20 if quick else 500
            ),
        }
        try:
            if store == "postgres":
                harness.STORES.use_postgres()
            for name in only:
                try:
                    await runs[name]()
                except Exception as exc:
                    # One scenario's failure must not lose the others' figures; the run
                    # still fails (``errors`` in the report, exit status 1).
                    traceback.print_exc()
                    report.data.setdefault("errors", {})[name] = repr(exc)
        finally:
            harness.STORES.close()
    report.data["wall_seconds"] = time.perf_counter() - started
    report.write(out)
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--only", default=None, help="scenarios to run, e.g. 1,3")
    parser.add_argument(
        "--store",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="the keyturn servers' store in scenarios 1-3 (postgres: a throwaway PostgreSQL 15)",
    )
    args = parser.parse_args()
    default = STORE_SCENARIOS if args.store == "postgres" else ALL
    only = tuple(args.only.split(",")) if args.only else default
    result = asyncio.run(main(args.quick, args.out, only, args.store))
    print(f"store: {args.store}")
    print(result.table())
    print(f"\nwall time {result.data['wall_seconds']:.0f} s; results in {args.out}")
    if result.data.get("errors"):
        print(f"scenarios that failed: {', '.join(result.data['errors'])}")
        raise SystemExit(1)
