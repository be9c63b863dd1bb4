"""``keyturn serve``: open the data dir, reconcile the inventory, resume unfinished tasks and
serve the vendor APIs until SIGTERM/SIGINT, then let tasks in flight finish (or park them).

With ``--tls-cert``/``--tls-key`` the API is served over HTTPS only, TLS 1.2 or newer; the
files are checked before anything else starts, so a bad pair fails fast with exit status 2.
With ``--workers N`` (``KEYTURN_WORKERS``) N processes serve one port
(``keyturn.cli.workers``). The server holds the data dir's lock shared
(``keyturn.store.rekey.DataDirLock``), so a master key rotation cannot run under it. Every log
record passes the redaction filter (``keyturn.logredact``), as text lines or, with
``KEYTURN_LOG_FORMAT=json``, one JSON object a line (``keyturn.logjson``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from starlette.types import ASGIApp
from uvicorn.loops.auto import auto_loop_factory

from keyturn.bootstrap import Runtime, build_runtime, store_url_of
from keyturn.cli import heap
from keyturn.cli.firstkey import hand_over_first_key
from keyturn.cli.options import ConfigOption, DataDirOption
from keyturn.cli.workers import serve_workers
from keyturn.config import ConfigError, Settings, load_settings
from keyturn.core.errors import DomainError
from keyturn.http.edge import EdgeLimits, edge_protocol
from keyturn.logjson import JsonFormatter
from keyturn.logredact import install as install_redaction
from keyturn.service.inventory import parse_inventory
from keyturn.store.rekey import DataDirLock
from keyturn.store.startup import startup_lock

log = logging.getLogger("keyturn.serve")


def serve(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    host: Annotated[str | None, typer.Option(envvar="KEYTURN_HOST", help="Listen address.")] = None,
    port: Annotated[int | None, typer.Option(envvar="KEYTURN_PORT", help="Listen port.")] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(envvar="KEYTURN_TLS_CERT", help="PEM certificate (chain): serve HTTPS."),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option(envvar="KEYTURN_TLS_KEY", help="PEM private key of --tls-cert."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            envvar="KEYTURN_WORKERS",
            help="Server processes on this machine, sharing the port and the store.",
        ),
    ] = None,
) -> None:
    """Run the API server (default http://127.0.0.1:9000)."""
    try:
        settings = load_settings(
            config=config,
            data_dir=data_dir,
            host=host,
            port=port,
            tls_cert=tls_cert,
            tls_key=tls_key,
            workers=workers,
        )
        tls = tls_context(settings)
    except ConfigError as exc:
        typer.echo(f"keyturn: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(
        settings.log_level, with_pid=settings.workers > 1, log_format=settings.log_format
    )
    lock = DataDirLock(settings.data_dir)
    try:
        held = lock.acquire(exclusive=False)
    except OSError as exc:
        typer.echo(f"keyturn: cannot use the data dir {settings.data_dir}: {exc}", err=True)
        raise typer.Exit(2) from None
    if not held:
        typer.echo(f"keyturn: a master key rotation is running on {settings.data_dir}", err=True)
        raise typer.Exit(2)
    try:
        if settings.workers > 1:
            serve_workers(settings)
        else:
            with asyncio.Runner(loop_factory=loop_factory()) as runner:
                runner.run(_serve(settings, tls))
    except (ConfigError, DomainError) as exc:
        typer.echo(f"keyturn: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        lock.release()


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop a single-process server runs on: uvicorn's own choice for ``loop="auto"``,
    the one ``--workers`` processes run on, so both modes always agree: uvloop where it is
    installed (uvicorn's ``standard`` extra brings it), else asyncio's. Measured on a signed
    read load, runs alternated: about 7% more calls per second on uvloop (its transports and
    scheduling are C)."""
    return auto_loop_factory(use_subprocess=False)


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's TLS context (None: plain HTTP): TLS 1.2 at least, the pair checked now."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    for path in (settings.tls_cert, settings.tls_key):
        if not path.is_file():
            raise ConfigError(f"TLS file {path} does not exist")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:
        # The reason is OpenSSL's (e.g. "key values mismatch"), never the files' content.
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise ConfigError(f"--tls-cert/--tls-key do not load as a PEM pair: {reason}") from None
    return context


async def _serve(
    settings: Settings,
    tls: ssl.SSLContext | None,
    on_started: Callable[[], None] | None = None,
) -> None:
    # On a shared PostgreSQL, one starting node at a time migrates and reconciles; the others
    # wait here for it (``keyturn.store.startup``).
    async with startup_lock(store_url_of(settings), settings.store_timeout):
        runtime = await build_runtime(settings)
        try:
            await prepare(runtime, settings.config)
        except BaseException:
            await runtime.close()
            raise
    try:
        server = uvicorn.Server(uvicorn_config(runtime.app(), settings, tls))
        heap.settle()
        log.info("serving on %s://%s:%d", settings.scheme, settings.host, settings.port)
        # uvicorn handles SIGTERM/SIGINT: it stops accepting requests, runs the app's
        # shutdown (which drains the worker), then re-raises the signal for the exit status.
        watch = (
            None if on_started is None else asyncio.create_task(_once_started(server, on_started))
        )
        try:
            await server.serve()
        finally:
            if watch is not None:
                watch.cancel()
    finally:
        await runtime.close()  # idempotent: the app's shutdown normally closed it already


async def serve_until_stopped(settings: Settings, on_started: Callable[[], None]) -> None:
    """What ``keyturn serve`` runs (plain HTTP, one process), calling ``on_started`` once the
    port listens (``keyturn sandbox``)."""
    await _serve(settings, None, on_started)


async def _once_started(server: uvicorn.Server, on_started: Callable[[], None]) -> None:
    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(0.05)
    on_started()


def uvicorn_config(app: ASGIApp, settings: Settings, tls: ssl.SSLContext | None) -> uvicorn.Config:
    """uvicorn's configuration, loaded: keyturn's edge protocol (connection limit, read
    deadline), no WebSocket upgrades (they would leave the edge protocol), and proxy headers
    believed only from ``settings.trusted_proxies``."""
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(settings.shutdown_grace),
        ssl_certfile=settings.tls_cert,
        ssl_keyfile=settings.tls_key,
        http=edge_protocol(
            EdgeLimits(max_connections=settings.max_connections, read_timeout=settings.read_timeout)
        ),
        ws="none",
        # No trusted proxy: no proxy-header middleware at all. The list is always passed, since
        # None would make uvicorn read FORWARDED_ALLOW_IPS (default: trust 127.0.0.1).
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies),
    )
    config.load()
    if tls is not None:
        # Serve with the context checked above (TLS 1.2 floor stated here, not left to
        # defaults); the files are still passed so that uvicorn reports https.
        config.ssl = tls
    return config


async def prepare(runtime: Runtime, config: Path | None, *, recover: bool = True) -> None:
    """Reconcile the inventory, hand over the first administrator key and (``recover``)
    resume unfinished tasks: what a start does once before serving."""
    services = runtime.services
    if config is not None:
        inventory = parse_inventory(config.read_text(), os.environ)
        report = await services.admin.reconcile(inventory)
        log.info(
            "inventory loaded: %d tenant(s), %d key(s), %d instance(s), %d removed",
            report.tenants,
            report.keys,
            report.instances,
            report.removed,
        )
        if services.secrets is not None:
            made = await services.secrets.reconcile(inventory.secrets)
            log.info(
                "inventory secrets: %d created, %d updated, %d removed",
                made.created,
                made.updated,
                made.removed,
            )
    key = await services.admin.bootstrap()
    if key is not None:
        # Shown once on a terminal, else put in a 0600 file; never logged.
        hand_over_first_key(key, runtime.settings.data_dir)
    if not recover:
        return
    # Heartbeat, lease renewal and the claimer; unfinished tasks nobody holds resume now.
    recovered = await runtime.cluster.start()
    # Fleet jobs this node drove before a restart, and running ones nobody drives.
    runtime.fleet_driver.start()
    if recovered:
        log.info("resuming %d unfinished task(s)", recovered)
    # Scheduled secret rotations: every node ticks, the store decides who fires a slot.
    runtime.scheduler.start()


def configure_logging(level: str, *, with_pid: bool = False, log_format: str = "text") -> None:
    """Log to stderr through the redaction filter, as text or JSON lines (``log_format``);
    ``with_pid`` (``--workers``) names the process of each record."""
    process = " [%(process)d]" if with_pid else ""
    logging.basicConfig(
        level=level,
        format="%(asctime)s" + process + " %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if log_format == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter(with_pid=with_pid))
    install_redaction()
