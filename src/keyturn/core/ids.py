"""Random public ids: numbers drawn from ``[1, limit)`` with the CSPRNG.

Ids a client sees (task ids, secret flow and version ids) are random, so they say nothing about
other tenants' activity, and below a limit that every SDK's integer type holds exactly (2**53
for JSON numbers, 2**52 where an id also travels as 13 hex digits). One helper, so every kind of
id is drawn the same way.
"""

from __future__ import annotations

import secrets


def random_id(limit: int) -> int:
    """A random integer in ``[1, limit)``."""
    return 1 + secrets.randbelow(limit - 1)
