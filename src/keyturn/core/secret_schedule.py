"""Rotation schedule arithmetic: slots, windows, the one catch-up and the retry backoff.

A schedule is an *anchor* (the first slot: the secret's creation day at ``begin``, UTC) and a
*period*; the slots are ``anchor + k * period``. The store keeps one ``next_rotation_at`` per
secret; whichever node moves it first (a compare-and-set) fires that slot, so a slot fires once
however many nodes look. After a rotation the next slot is the first one after *now*: slots
missed while every node was down collapse into one catch-up. A *window* bounds how late a slot
may start; a slot found after its window closed is caught up once at the next daily opening of
the window (``begin`` time of day), or at once when the schedule has no ``begin``. A failed
try is retried after an exponential backoff (each try with a fresh password). ``PendingWork``
is what a scheduler tick learns from one cheap store read before doing anything else. Pure
functions of their arguments: the clock is the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Final

#: First retry after a failed rotation, doubling per failure up to ``BACKOFF_CAP``.
BACKOFF_BASE: Final = timedelta(seconds=30)
BACKOFF_CAP: Final = timedelta(hours=1)
DAY: Final = timedelta(days=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingWork:
    """The whole cluster's pending schedule work, from one store read
    (``SecretRepo.pending_work``): an idle tick stops at it."""

    #: Some rotation flow (any node's) is unfinished: it is to be settled.
    unfinished: bool = False
    #: The earliest ``next_rotation_at`` of any secret (a slot, a retry or a request).
    next_rotation_at: datetime | None = None
    #: The earliest pending overlap follow-up (``drop_old_at``: due, claimed or retrying).
    drop_old_at: datetime | None = None

    def rotation_due(self, now: datetime) -> bool:
        return self.next_rotation_at is not None and self.next_rotation_at <= now

    def drop_due(self, now: datetime) -> bool:
        return self.drop_old_at is not None and self.drop_old_at <= now


def anchor(created: datetime, begin: time | None) -> datetime:
    """The first slot: ``created`` itself without ``begin``, else the first ``begin`` time of
    day (UTC) at or after ``created``."""
    if begin is None:
        return created
    moment = datetime.combine(created.astimezone(UTC).date(), begin, tzinfo=UTC)
    return moment if moment >= created else moment + DAY


def slot_after(first: datetime, period: timedelta, moment: datetime) -> datetime:
    """The first slot strictly after ``moment`` (``first`` itself while it is later)."""
    if moment < first:
        return first
    steps = (moment - first) // period + 1
    return first + steps * period


def slot_at_or_before(first: datetime, period: timedelta, moment: datetime) -> datetime | None:
    """The latest slot at or before ``moment`` (None before the first)."""
    if moment < first:
        return None
    return first + ((moment - first) // period) * period


def window_open(slot: datetime, window: timedelta | None, now: datetime) -> bool:
    """Whether a rotation for ``slot`` may start at ``now``."""
    return slot <= now and (window is None or now <= slot + window)


def catch_up_at(
    slot: datetime, now: datetime, *, begin: time | None, window: timedelta | None
) -> datetime:
    """When a due ``slot`` fires: ``now`` while its window is open (or it has none); after the
    window closed, once at the next daily window opening (now without a ``begin``, or when
    ``now`` is inside today's window)."""
    if window_open(slot, window, now) or begin is None or window is None or window >= DAY:
        return now
    today = datetime.combine(now.astimezone(UTC).date(), begin, tzinfo=UTC)
    for opening in (today - DAY, today, today + DAY):
        if opening <= now <= opening + window:
            return now
        if opening > now:
            return opening
    return today + DAY  # not reached: one of the three openings is later than now


def after_success(first: datetime, period: timedelta, now: datetime) -> datetime:
    """The next slot after a rotation finished at ``now``: missed slots are not replayed."""
    return slot_after(first, period, now)


def backoff(attempt: int, period: timedelta | None = None) -> timedelta:
    """The wait before try ``attempt + 1`` after ``attempt`` failed tries: 30 s doubling, at
    most an hour, and at most a quarter of the period so a short schedule still retries."""
    exponent = min(max(attempt, 1) - 1, 16)
    wait = min(BACKOFF_BASE * (1 << exponent), BACKOFF_CAP)
    if period is not None:
        wait = min(wait, max(period / 4, timedelta(seconds=1)))
    return wait
