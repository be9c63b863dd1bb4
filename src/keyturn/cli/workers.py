"""``keyturn serve --workers N``: N server processes on one machine and one port.

The parent prepares the store once — migrations, the audit chain's key, the inventory, the first
administrator key — so the workers never race to migrate one SQLite file (WAL) or one PostgreSQL
database, then binds one listening socket per worker on the port (``worker_sockets``: Linux
spreads the connections) and runs uvicorn's own supervisor on them: it starts the workers,
restarts one that dies and, on SIGTERM/SIGINT, passes SIGTERM on to every worker and waits for
them. Each worker is a full node on the shared state of the store (rate limits, the change lock,
replay memory, access keys): its own runtime (store connections, engine pools, task worker),
built when its ASGI lifespan starts, served through keyturn's edge protocol, and drained on its
own SIGTERM.

Workers are spawned, not forked, so uvicorn pickles their configuration: ``WorkerConfig``
pickles as the ``Settings`` alone and is rebuilt in the child (the edge protocol class and the
TLS context cannot cross a process boundary). Every worker is a node of the task-lease design
(heartbeat, lease renewal, the claimer): unfinished tasks are resumed by whichever worker claims
them, and a task of a worker that dies is taken over by a sibling when its lease lapses.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import logging
import os
import signal
from typing import Any, Final

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from keyturn.bootstrap import build_runtime, reset_worker_metrics, store_url_of
from keyturn.cli import heap
from keyturn.cli.worker_sockets import SlotSupervisor, bind_slots
from keyturn.config import Settings
from keyturn.store.rekey import DataDirLock
from keyturn.store.startup import startup_lock

log = logging.getLogger("keyturn.serve")

#: ``prctl`` option: the signal a process gets when its parent dies (Linux).
_PR_SET_PDEATHSIG: Final = 1


def serve_workers(settings: Settings) -> None:
    """Prepare the store once, then run ``settings.workers`` workers until SIGTERM/SIGINT."""
    asyncio.run(_prepare_once(settings))
    # The workers add up their counts for /metrics; none of a previous run's.
    reset_worker_metrics(settings)
    config = WorkerConfig(settings)
    slots = bind_slots(config, settings.workers)
    log.info(
        "serving on %s://%s:%d with %d workers (supervisor pid %d)",
        settings.scheme,
        settings.host,
        settings.port,
        settings.workers,
        os.getpid(),
    )
    try:
        SlotSupervisor(config, slots).run()
    finally:
        for slot in slots:
            slot.close()


async def _prepare_once(settings: Settings) -> None:
    from keyturn.cli.serve import prepare

    # Under the same start-up lock as a single-process node: on a shared PostgreSQL, one
    # starting node (or supervisor) at a time migrates and reconciles.
    async with startup_lock(store_url_of(settings), settings.store_timeout):
        runtime = await build_runtime(settings)
        try:
            await prepare(runtime, settings.config, recover=False)
        finally:
            await runtime.close()


class WorkerConfig(uvicorn.Config):
    """The supervisor's view of the workers' configuration: where to listen, how many, and
    how to rebuild each worker's real configuration in its own process."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            "keyturn",  # never loaded here: each worker builds its own (see __reduce__)
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_config=None,
        )
        self.settings = settings

    def __reduce__(self) -> tuple[Any, ...]:
        return (worker_config, (self.settings,))


def worker_config(settings: Settings) -> uvicorn.Config:
    """A worker's own configuration, built in the worker: ``serve``'s, serving a
    ``WorkerApp``."""
    from keyturn.cli.serve import configure_logging, tls_context, uvicorn_config

    _stop_with_supervisor()
    configure_logging(settings.log_level, with_pid=True, log_format=settings.log_format)
    return uvicorn_config(WorkerApp(settings), settings, tls_context(settings))


def _stop_with_supervisor() -> None:
    """Ask Linux to send this worker SIGTERM when the supervisor dies, even by SIGKILL, so no
    worker goes on serving unsupervised (elsewhere: best effort, nothing)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return


class WorkerApp:
    """One worker's ASGI app: its runtime is built when the lifespan starts (so a worker that
    cannot open the store fails its start, and the supervisor stops), then every event goes to
    ``Runtime.app``, whose lifespan shutdown drains the worker's tasks."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._app: ASGIApp | None = None
        self._lock = DataDirLock(settings.data_dir)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is not None:
            await self._app(scope, receive, send)
            return
        if scope["type"] != "lifespan":  # pragma: no cover - uvicorn starts the lifespan first
            raise RuntimeError("a request reached a worker before its start")
        startup = await receive()
        try:
            self._app = await self._start()
        except Exception as exc:
            log.exception("worker %d could not start", os.getpid())
            await send({"type": "lifespan.startup.failed", "message": type(exc).__name__})
            return
        replayed = [startup]

        async def first_startup() -> Any:
            return replayed.pop() if replayed else await receive()

        await self._app(scope, first_startup, send)

    async def _start(self) -> ASGIApp:
        # Shared, as every server holds it: a master key rotation cannot run under a worker.
        if not self._lock.acquire(exclusive=False):
            raise RuntimeError("a master key rotation is running on the data dir")
        settings = self._settings
        if settings.node_id is not None:
            # One node id per process: a shared one would let a restarted worker reclaim the
            # tasks its siblings run.
            settings = dataclasses.replace(settings, node_id=f"{settings.node_id}-{os.getpid()}")
        runtime = await build_runtime(settings)
        try:
            runtime.share_metrics()
            # Every worker is a node: heartbeat, lease renewal, claimer; claims are atomic, so
            # each resumes only what it claims.
            recovered = await runtime.cluster.start()
            if recovered:
                log.info("worker %d resumes %d unfinished task(s)", os.getpid(), recovered)
        except BaseException:
            await runtime.close()
            raise
        app = runtime.app()
        heap.settle()
        log.info("worker %d ready", os.getpid())
        return app
