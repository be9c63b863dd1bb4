"""The workers of one ``serve --workers N`` adding up their counts (``SiblingCounts``), with
files in a temporary directory and no server: every worker's scrape shows the totals, a dead
worker's counts stay in them, and whatever else is in the directory (half a file, junk, wrong
shapes, negative or huge numbers) is left out rather than failing a scrape."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keyturn.telemetry.prometheus import PrometheusMetrics
from keyturn.telemetry.sibling_counts import SiblingCounts
from tests.support.scrape import parse, value

CALL = {"vendor": "tencent", "action": "redis:ResetPassword", "code": "OK"}
TIMED = {"vendor": "tencent", "action": "redis:ResetPassword"}


@pytest.fixture
async def workers(tmp_path: Path) -> AsyncIterator[tuple[PrometheusMetrics, PrometheusMetrics]]:
    SiblingCounts.reset(tmp_path)
    first, second = PrometheusMetrics(process=False), PrometheusMetrics(process=False)
    first.share_with(SiblingCounts(tmp_path, "101"), every=3600)
    second.share_with(SiblingCounts(tmp_path, "102"), every=3600)
    yield first, second
    await first.close()
    await second.close()


async def scraped(metrics: PrometheusMetrics, sample: str, labels: dict[str, str]) -> float:
    return value(parse((await metrics.render()).decode()), sample, labels)


async def test_every_worker_s_scrape_shows_the_totals(
    workers: tuple[PrometheusMetrics, PrometheusMetrics],
) -> None:
    first, second = workers
    for _ in range(3):
        first.api_call("tencent", "redis:ResetPassword", "OK", 0.002)
    second.api_call("tencent", "redis:ResetPassword", "OK", 0.2)
    second.refused("tencent", "rate_limit")
    first.publish()  # what its timer does every second (a scrape of it does it too)
    for worker in (second, first, second):
        assert await scraped(worker, "keyturn_api_calls_total", CALL) == 4
        assert await scraped(worker, "keyturn_api_call_duration_seconds_count", TIMED) == 4
        assert await scraped(
            worker, "keyturn_api_call_duration_seconds_sum", TIMED
        ) == pytest.approx(0.206)
        assert await scraped(worker, "keyturn_refusals_total", {"reason": "rate_limit"}) == 1
    # Histograms add up bucket by bucket: three calls under 2.5 ms, one over 100 ms.
    fast = {**TIMED, "le": "0.0025"}
    assert await scraped(first, "keyturn_api_call_duration_seconds_bucket", fast) == 3


async def test_a_dead_worker_s_counts_stay_in_the_totals(tmp_path: Path) -> None:
    SiblingCounts.reset(tmp_path)
    gone = PrometheusMetrics(process=False)
    gone.share_with(SiblingCounts(tmp_path, "201"), every=3600)
    gone.api_call("tencent", "redis:ResetPassword", "OK", 0.01)
    await gone.close()  # its last snapshot is published on the way out
    replacement = PrometheusMetrics(process=False)
    replacement.share_with(SiblingCounts(tmp_path, "202"), every=3600)
    try:
        replacement.api_call("tencent", "redis:ResetPassword", "OK", 0.01)
        assert await scraped(replacement, "keyturn_api_calls_total", CALL) == 2
    finally:
        await replacement.close()
    # A new server run starts from nothing.
    SiblingCounts.reset(tmp_path)
    assert list(tmp_path.iterdir()) == []


async def test_what_is_not_a_sibling_s_snapshot_is_left_out(
    workers: tuple[PrometheusMetrics, PrometheusMetrics], tmp_path: Path
) -> None:
    first, _ = workers
    first.api_call("tencent", "redis:ResetPassword", "OK", 0.01)
    good = [list(CALL.values()), 2]
    entries = [
        good,
        [["tencent", "redis:ResetPassword"], 5],  # too few labels
        [[*CALL.values(), "extra"], 5],  # too many
        [["tencent", 7, "OK"], 5],  # not text
        [["tencent", "redis:ResetPassword", "Other"], -3],  # negative
        [["tencent", "redis:ResetPassword", "Big"], True],  # not a number
        [["tencent", "redis:ResetPassword", "Lists"], [1, 2]],  # a histogram's shape
        "junk",
    ]
    (tmp_path / "301.json").write_text(
        json.dumps(
            {
                "keyturn_api_calls": entries,
                # A histogram with the wrong number of buckets.
                "keyturn_api_call_duration_seconds": [[["tencent", "redis:ResetPassword"], [1]]],
                "unknown_family": [[[], 1]],
            }
        )
    )
    (tmp_path / "302.json").write_text('{"keyturn_api_calls": [[["tencent"')  # half written
    (tmp_path / "303.json").write_text("[1, 2, 3]")
    (tmp_path / "304.json").write_text(" " * (1 << 20) + "{}")  # too large to be ours
    found = parse((await first.render()).decode())
    assert value(found, "keyturn_api_calls_total", CALL) == 3
    assert value(found, "keyturn_api_calls_total") == 3
    assert value(found, "keyturn_api_call_duration_seconds_count", TIMED) == 1
    assert "unknown_family" not in found
