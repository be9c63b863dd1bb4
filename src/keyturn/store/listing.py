"""Paging instance listings without counting or walking the whole table on every call.

``DescribeInstances`` answers a page plus the total count. On 100,000 instances a ``COUNT`` and
an ``OFFSET`` walk cost several milliseconds each, per call. Both only change when the set of
instances changes, which ``put_instance`` and ``remove_instance`` record by bumping a generation
number in the same transaction (the CLI, in another process, bumps it too). So the count and a
sparse list of anchor ids (every ``STEP``-th id in order) are cached per filter and generation;
a deep page then starts from the nearest anchor with ``id >= anchor`` and a short OFFSET. A
stale entry is never used: the generation is read (one primary-key read) on every call.
Imports: SQLAlchemy, ``keyturn.store.schema`` and the standard library.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa

from keyturn.store.schema import generations, instances

#: Distance between cached anchor ids.
STEP: Final = 512
#: Filters remembered at most (one per tenant and product in practice).
MAX_ENTRIES: Final = 1024

INSTANCES_GENERATION: Final = "instances"
READ_GENERATION: Final = sa.select(generations.c.value).where(
    generations.c.name == INSTANCES_GENERATION
)
BUMP_GENERATION: Final = (
    sa.update(generations)
    .where(generations.c.name == INSTANCES_GENERATION)
    .values(value=generations.c.value + 1)
)


@dataclass(slots=True)
class _Entry:
    generation: int
    total: int
    anchors: list[str] | None = None


@dataclass(frozen=True, slots=True)
class PagePlan:
    """How to read one page: extra conditions, the remaining OFFSET, and the total."""

    where: list[sa.ColumnElement[bool]]
    offset: int
    total: int
    #: The id the page starts from (the condition ``where`` adds), for prebuilt statements.
    anchor: str | None = None


class ListingCache:
    """Counts and anchors per listing filter, valid for one instances generation."""

    def __init__(self) -> None:
        self._entries: dict[Hashable, _Entry] = {}

    async def plan(
        self,
        conn: Any,
        key: Hashable,
        where: Sequence[sa.ColumnElement[bool]],
        offset: int,
    ) -> PagePlan:
        generation = int(await conn.scalar(READ_GENERATION) or 0)
        entry = self._entries.get(key)
        if entry is None or entry.generation != generation:
            count = sa.select(sa.func.count()).select_from(instances).where(*where)
            entry = _Entry(generation=generation, total=int(await conn.scalar(count) or 0))
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = entry
        if offset < STEP or offset >= entry.total:
            return PagePlan(where=list(where), offset=offset, total=entry.total)
        if entry.anchors is None:
            ids = sa.select(instances.c.id).where(*where).order_by(instances.c.id)
            every = (await conn.execute(ids)).scalars().all()
            entry.anchors = [str(i) for i in every[STEP::STEP]]
        slot = min(offset // STEP, len(entry.anchors)) - 1
        if slot < 0:
            return PagePlan(where=list(where), offset=offset, total=entry.total)
        anchor = entry.anchors[slot]
        return PagePlan(
            where=[*where, instances.c.id >= anchor],
            offset=offset - (slot + 1) * STEP,
            total=entry.total,
            anchor=anchor,
        )
