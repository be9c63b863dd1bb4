"""What a reset's health probe saw of each node, for the task's ``discover`` and ``snapshot``.

Every task asks each node its role again (``discover``: a PostgreSQL standby, a Redis replica
and its master), yet a reset's health probe has just read that a few milliseconds before, in
the round trip it makes anyway. ``ProbedRoles`` keeps what a probe saw, by pool key, for
``PROBED_FRESH`` seconds and one taker, so that ``discover`` uses it instead of asking once
more; a second ``discover``, or one after that time, asks the node. That is no staler a view
than ``discover``'s own: either may be overtaken by a failover before the change, which is why
the change re-reads the role on the node it writes and its checks ask every node again.

The same holds for the account itself: a task snapshots it on every node right after its
reset's probe read it. ``ProbedAccounts`` keeps what a probe read of an account (by pool key
and account), for one ``snapshot`` within ``PROBED_FRESH`` seconds. Such a snapshot is a few
milliseconds older than one read at that moment; both come before the write-ahead record and
the change, so neither excludes a change made by someone else in between, and the task's
checks verify the node as it is after the change. Memory is bounded (``_MOST_PROBED`` entries
each, the oldest go first: ``expiring.Expiring``). Imports: this package's ``expiring``.
"""

from __future__ import annotations

from typing import Final, TypeVar

from keyturn.engines.expiring import Expiring

#: A probe's view of a node's role serves one ``discover`` within this many seconds.
PROBED_FRESH: Final = 1.0
#: The most nodes whose probed role is kept (the oldest go first).
_MOST_PROBED: Final = 4096

K = TypeVar("K")
V = TypeVar("V")


class _Probed(Expiring[K, V]):
    """What probes read, for ``fresh`` seconds and one taker each; the repr tells only how many
    are kept (values may hold credential verifiers)."""

    def __init__(self, fresh: float = PROBED_FRESH) -> None:
        super().__init__(fresh, _MOST_PROBED)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} kept)"


class ProbedRoles(_Probed[str, V]):
    """The role each node (by pool key) had when it was last probed (``put``), for ``fresh``
    seconds and one taker (``take``)."""


class ProbedAccounts(_Probed[tuple[str, str], V]):
    """What a probe read of an account on each node (``put`` by pool key and account, e.g. an
    ACL user and the node's replication state), for ``fresh`` seconds and one ``snapshot``
    (``take``)."""
