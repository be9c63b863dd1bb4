"""One listening socket per ``serve --workers`` worker, all on one port (``SO_REUSEPORT``).

uvicorn's supervisor hands every worker the same listening socket. On it the workers do not
share connections: each asyncio loop accepts every pending connection when it wakes, so a
burst of clients (a connection pool opening, a benchmark's 32 clients) lands on whichever
worker woke first and the other workers idle; measured, ``--workers 2`` served 1.0-1.1x the
verified resets of one worker, one process at 100% of a core and the other near 0%. With a
socket per worker, bound with ``SO_REUSEPORT``, Linux spreads new connections across the
workers by a hash of the connection. The supervisor keeps every socket open and listening, so a
worker's slot keeps queueing connections while the worker is restarted; the replacement
serves the slot of the worker it replaces.

uvicorn gives no hook to hand a worker its own sockets, so ``SlotSupervisor`` is its
supervisor with the three places that start a worker taught the worker's slot; the rest
(health checks, signals, restarts) is uvicorn's.
"""

from __future__ import annotations

import socket
import sys

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess
from uvicorn.supervisors.multiprocess import Process, logger


def bind_slots(config: uvicorn.Config, count: int) -> list[socket.socket]:
    """``count`` listening sockets on ``config``'s host and port (the first one's port when
    the port is 0), each with ``SO_REUSEPORT``."""
    family = socket.AF_INET6 if config.host and ":" in config.host else socket.AF_INET
    slots: list[socket.socket] = []
    port = config.port
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            slots.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((config.host, port))
            sock.listen(config.backlog)
            port = sock.getsockname()[1]
    except OSError as exc:
        for sock in slots:
            sock.close()
        logger.error(exc)
        sys.exit(STARTUP_FAILURE)
    return slots


class SlotSupervisor(Multiprocess):
    """uvicorn's supervisor, each worker serving its own slot's socket (``sockets[slot]``,
    from ``bind_slots``)."""

    def _start(self, slot: int) -> Process:
        process = Process(self.config, [self.sockets[slot]])
        process.start()
        return process

    def init_processes(self) -> None:
        self.processes = [self._start(slot) for slot in range(self.processes_num)]

    def restart_all(self) -> None:
        """As uvicorn's: each replacement is ready before the worker it replaces stops."""
        for slot, old_process in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new_process = self._start(slot)
            timeout = self.config.timeout_worker_healthcheck
            if not new_process.wait_until_ready(timeout, self.should_exit):
                new_process.kill()
                new_process.join()
                if not self.should_exit.is_set():
                    logger.error("a new worker was not ready in time; restart aborted")
                return
            old_process.terminate()
            old_process.join()
            self.processes[slot] = new_process

    def keep_subprocess_alive(self) -> None:
        """As uvicorn's: a hung or dead worker is replaced on its slot, and a worker that
        failed to start stops the supervisor (every restart would fail the same way)."""
        if self.should_exit.is_set():
            return
        for slot, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                logger.error("worker %s failed to start; stopping", process.pid)
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            logger.info("worker %s died; starting another", process.pid)
            self.processes[slot] = self._start(slot)
