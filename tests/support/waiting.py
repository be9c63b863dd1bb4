"""Waiting in end-to-end and wire tests: poll a condition until it holds (or fail the test
after a bound), and run a blocking SDK call in a thread while the test changes the world under
it, joining it later for its exception."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``condition`` every 20 ms; an ``AssertionError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


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
