"""Waiting in tests: poll a condition until it holds (``holds_by``: whether it did before a
deadline; ``wait_for``: fail the test after a bound), and run a blocking SDK call in a thread
while the test changes the world under it, joining it later for its exception."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def holds_by(
    deadline: float,
    condition: Callable[[], bool],
    *,
    every: float = 0.02,
    despite: tuple[type[BaseException], ...] = (),
) -> bool:
    """Whether ``condition`` held before ``deadline`` (``time.monotonic``), asked every
    ``every`` seconds; an exception of ``despite`` it raises counts as "not yet"."""
    while True:
        try:
            if condition():
                return True
        except despite:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(every)


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``condition`` every 20 ms; an ``AssertionError`` after ``timeout`` seconds."""
    if not holds_by(time.monotonic() + timeout, condition):
        raise AssertionError("condition not reached")


def in_thread(call: Callable[[], object]) -> Callable[[], BaseException | None]:
    """Run ``call`` in a thread; the returned function joins it (60 s at the most) and gives
    its exception."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, name="sdk-call", daemon=True)
    thread.start()

    def join() -> BaseException | None:
        thread.join(60)
        assert not thread.is_alive(), "the SDK call did not return"
        return failure[0] if failure else None

    return join
