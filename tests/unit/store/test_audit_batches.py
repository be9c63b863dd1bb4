"""``AuditBatches`` (the PostgreSQL store's group commit of audit appends) with a fake batch
writer: appends in flight share one write, in the order they came; a failed write fails
every caller of its batch and only those; a caller cancelled while it waits leaves its
record in the batch; a long queue is cut into batches of ``MOST_PER_BATCH``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from keyturn.core.audit import AuditEvent
from keyturn.store.audit_batches import MOST_PER_BATCH, AuditBatches
from tests.support.audit_events import audit_event


def numbered(n: int) -> AuditEvent:
    return audit_event(action="redis:DescribeTaskInfo", neutral_action="", request_id=str(n))


class Writer:
    """Records each batch; fails the batches whose number is in ``failing``."""

    def __init__(self, failing: tuple[int, ...] = ()) -> None:
        self.batches: list[list[str]] = []
        self.failing = failing
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, events: Sequence[AuditEvent]) -> None:
        await self.gate.wait()
        self.batches.append([e.request_id for e in events])
        if len(self.batches) - 1 in self.failing:
            raise OSError("the batch failed")


async def test_appends_in_flight_share_one_write_in_their_order() -> None:
    writer = Writer()
    batches = AuditBatches(writer)
    await asyncio.gather(*(batches.append(numbered(n)) for n in range(5)))
    assert writer.batches == [["0", "1", "2", "3", "4"]]


async def test_appends_made_during_a_write_go_in_the_next_one() -> None:
    writer = Writer()
    writer.gate.clear()
    batches = AuditBatches(writer)
    first = asyncio.ensure_future(batches.append(numbered(0)))
    await asyncio.sleep(0)  # the writer took the first record and waits in its write
    later = [asyncio.ensure_future(batches.append(numbered(n))) for n in (1, 2)]
    writer.gate.set()
    await asyncio.gather(first, *later)
    assert writer.batches == [["0"], ["1", "2"]]


async def test_a_failed_write_fails_its_callers_only() -> None:
    writer = Writer(failing=(0,))
    writer.gate.clear()
    batches = AuditBatches(writer)
    first = [asyncio.ensure_future(batches.append(numbered(n))) for n in (0, 1)]
    await asyncio.sleep(0)
    second = asyncio.ensure_future(batches.append(numbered(2)))
    writer.gate.set()
    results = await asyncio.gather(*first, return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    await second  # the next batch is written
    assert writer.batches == [["0", "1"], ["2"]]


async def test_a_cancelled_caller_s_record_is_still_written() -> None:
    writer = Writer()
    writer.gate.clear()
    batches = AuditBatches(writer)
    gone = asyncio.ensure_future(batches.append(numbered(0)))
    stays = asyncio.ensure_future(batches.append(numbered(1)))
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    writer.gate.set()
    await stays
    assert writer.batches == [["0", "1"]]


async def test_a_long_queue_is_written_in_bounded_batches() -> None:
    writer = Writer()
    batches = AuditBatches(writer)
    await asyncio.gather(*(batches.append(numbered(n)) for n in range(MOST_PER_BATCH + 3)))
    assert [len(b) for b in writer.batches] == [MOST_PER_BATCH, 3]
