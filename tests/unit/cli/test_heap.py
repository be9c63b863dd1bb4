"""``keyturn.cli.heap``: a started server's heap is exempt from later full collections."""

from __future__ import annotations

import gc

from keyturn.cli import heap


def test_settle_collects_startup_garbage_and_freezes_what_survives() -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    Cycle()  # garbage only a collection frees
    try:
        heap.settle()
        assert gc.get_freeze_count() > 0
        assert not any(isinstance(o, Cycle) for o in gc.get_objects())
    finally:
        gc.unfreeze()  # the test process goes on collecting as before
