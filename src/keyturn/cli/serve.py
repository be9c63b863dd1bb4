"""``keyturn serve``: open the data dir, reconcile the inventory, resume unfinished tasks and
serve the vendor APIs until SIGTERM/SIGINT, then let tasks in flight finish (or park them).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from keyturn.bootstrap import Runtime, build_runtime
from keyturn.cli.options import ConfigOption, DataDirOption
from keyturn.config import ConfigError, Settings, load_settings
from keyturn.core.errors import DomainError
from keyturn.service.inventory import parse_inventory

log = logging.getLogger("keyturn.serve")


def serve(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    host: Annotated[str | None, typer.Option(envvar="KEYTURN_HOST", help="Listen address.")] = None,
    port: Annotated[int | None, typer.Option(envvar="KEYTURN_PORT", help="Listen port.")] = None,
) -> None:
    """Run the API server (default http://127.0.0.1:9000)."""
    try:
        settings = load_settings(config=config, data_dir=data_dir, host=host, port=port)
    except ConfigError as exc:
        typer.echo(f"keyturn: {exc}", err=True)
        raise typer.Exit(2) from None
    _configure_logging(settings.log_level)
    try:
        asyncio.run(_serve(settings))
    except (ConfigError, DomainError) as exc:
        typer.echo(f"keyturn: {exc}", err=True)
        raise typer.Exit(2) from None


async def _serve(settings: Settings) -> None:
    runtime = await build_runtime(settings)
    try:
        await _prepare(runtime, settings.config)
        server = uvicorn.Server(
            uvicorn.Config(
                runtime.app(),
                host=settings.host,
                port=settings.port,
                log_config=None,
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=int(settings.shutdown_grace),
            )
        )
        log.info("serving on http://%s:%d", settings.host, settings.port)
        # uvicorn handles SIGTERM/SIGINT: it stops accepting requests, runs the app's
        # shutdown (which drains the worker), then re-raises the signal for the exit status.
        await server.serve()
    finally:
        await runtime.close()  # idempotent: the app's shutdown normally closed it already


async def _prepare(runtime: Runtime, config: Path | None) -> None:
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
    key = await services.admin.bootstrap()
    if key is not None:
        # Shown once on the terminal, never logged: the data dir keeps it sealed.
        print(
            "keyturn: created an administrator access key for the default tenant "
            f"{key.tenant_id}:\n  SecretId  {key.id}\n  SecretKey {key.secret.reveal()}\n"
            "  (shown once; manage keys with `keyturn keys ...`)",
            file=sys.stdout,
            flush=True,
        )
    recovered = await runtime.worker.recover()
    if recovered:
        log.info("resuming %d unfinished task(s)", recovered)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
