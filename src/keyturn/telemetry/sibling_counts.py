"""The counts the workers of one ``keyturn serve --workers N`` share, so that ``/metrics`` shows
the server's totals whichever worker answers the scrape.

The N workers serve one port (Linux spreads the connections), so a Prometheus scrape reaches
one of them at random: with each showing only its own counts, a counter would jump between the
workers' values at every scrape and read as a reset each time. prometheus-client's own
multiprocess mode (memory-mapped files per metric) needs the library's ``Counter`` and
``Histogram``, which keyturn's hot paths do not use (``keyturn.telemetry.prometheus``). Here each
worker publishes a snapshot of its counters and histograms, as JSON, to a file of its own in a
directory of the data dir, once a second and before it answers a scrape; a scrape adds the
other workers' latest snapshots to the answering worker's live counts. A worker that died keeps
its file, so the totals never go back when the supervisor replaces it (the new worker counts
from zero under its own pid); the supervisor empties the directory when it starts. A snapshot
that cannot be read (being replaced, malformed) is skipped for that scrape. Nothing in a
snapshot is secret: family names, label values (vendor, action, code, engine, operation, error
class, statement kind) and numbers. Imports: the standard library.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeAlias

log = logging.getLogger(__name__)

#: A family's values: label values -> a count, or a histogram's bucket counts and sum.
Values: TypeAlias = dict[tuple[str, ...], float | list[float]]
#: Every family's values, by family name.
Snapshot: TypeAlias = dict[str, Values]


@dataclass(frozen=True, slots=True)
class Shape:
    """What a family's entries look like: how many label values, and for a histogram how many
    numbers its value holds (its buckets, the count over the last bound and the sum; 0 for a
    counter, whose value is one number)."""

    labels: int
    slots: int = 0


#: The directory under the data dir.
DIRECTORY: Final = "worker-metrics"
#: A snapshot larger than this is not read (the families' label values are bounded: a few KB).
_MOST_BYTES: Final = 1 << 20


class SiblingCounts:
    """This worker's snapshot file and its siblings' in ``directory``; ``own`` names this
    worker's file (its pid)."""

    def __init__(self, directory: Path, own: str) -> None:
        self._directory = directory
        self._own = f"{own}.json"

    @staticmethod
    def reset(directory: Path) -> None:
        """Make ``directory`` empty (0700): what the supervisor does before its workers start,
        so that a previous run's counts are not added to this one's."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in directory.iterdir():
            stale.unlink(missing_ok=True)

    def publish(self, snapshot: Snapshot) -> None:
        """Replace this worker's file with ``snapshot`` (written aside, then renamed: a reader
        sees the old snapshot or the new one, never half of one)."""
        data = {
            name: [[list(labels), value] for labels, value in values.items()]
            for name, values in snapshot.items()
        }
        path = self._directory / self._own
        partial = path.with_suffix(".tmp")
        try:
            partial.write_text(json.dumps(data, separators=(",", ":")))
            os.replace(partial, path)
        except OSError as exc:
            log.warning("metrics: could not publish this worker's counts (%s)", exc.strerror)

    def others(self, shapes: Mapping[str, Shape]) -> list[Snapshot]:
        """The other workers' latest snapshots, each family's entries checked against
        ``shapes``: anything else in a file is left out, so every value handed back has its
        family's shape."""
        found: list[Snapshot] = []
        try:
            paths = sorted(self._directory.glob("*.json"))
        except OSError:
            return found
        for path in paths:
            if path.name == self._own:
                continue
            try:
                if path.stat().st_size > _MOST_BYTES:
                    continue
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # replaced or removed meanwhile, or not ours: this scrape skips it
            found.append(_checked(data, shapes))
        return found


def _checked(data: Any, shapes: Mapping[str, Shape]) -> Snapshot:
    snapshot: Snapshot = {}
    if not isinstance(data, dict):
        return snapshot
    for name, shape in shapes.items():
        entries = data.get(name)
        if not isinstance(entries, list):
            continue
        values: Values = {}
        for entry in entries:
            parsed = _entry(entry, shape)
            if parsed is not None:
                values[parsed[0]] = parsed[1]
        snapshot[name] = values
    return snapshot


def _entry(entry: Any, shape: Shape) -> tuple[tuple[str, ...], float | list[float]] | None:
    if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], list)):
        return None
    labels, value = entry
    if len(labels) != shape.labels or not all(isinstance(label, str) for label in labels):
        return None
    if shape.slots == 0:
        return (tuple(labels), float(value)) if _number(value) else None
    if isinstance(value, list) and len(value) == shape.slots and all(_number(v) for v in value):
        return tuple(labels), [float(v) for v in value]
    return None


def _number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def added(own: Mapping[tuple[str, ...], float | list[float]], others: Sequence[Values]) -> Values:
    """``own`` plus every one of ``others``, entry by entry (a histogram's bucket counts
    position by position); ``others`` were checked against ``own``'s family shape."""
    total: Values = {
        key: list(value) if isinstance(value, list) else value for key, value in own.items()
    }
    for values in others:
        for key, value in values.items():
            mine = total.get(key)
            if mine is None:
                total[key] = list(value) if isinstance(value, list) else value
            elif isinstance(mine, list) and isinstance(value, list):
                total[key] = [a + b for a, b in zip(mine, value, strict=True)]
            elif not isinstance(mine, list) and not isinstance(value, list):
                total[key] = mine + value
    return total
