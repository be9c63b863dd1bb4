"""``keyturn sandbox``: keyturn with throwaway engines behind it, for a first look and for testing
code written against the vendors' APIs.

It starts, under ``DATA_DIR/sandbox``, one redis-server per Redis product (so resetting one
instance's ``default`` leaves the others alone), and PostgreSQL and MariaDB when their binaries
are installed (else it says how to get them and leaves their product out;
``keyturn.engines.local``). It registers one instance of each of the five products under the
``sandbox`` tenant, reuses that tenant's access key (or makes one), serves exactly as ``keyturn
serve`` does, and once the port listens prints the key, the endpoint and a vendor CLI/SDK call
per product, and writes the same to ``DATA_DIR/sandbox.json`` (0600).

On SIGINT/SIGTERM, or when the server stops, it stops every engine it started, removes the
engines' files, the sandbox instances and ``sandbox.json``; the tenant and its key stay, so the
next run prints the same key. A run starts by stopping whatever a killed run left in
``DATA_DIR/sandbox`` (every process whose command line is in it) and starting afresh; a second
sandbox on a data dir in use is refused.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from keyturn.bootstrap import open_admin_store
from keyturn.cli.options import DataDirOption
from keyturn.cli.sandbox_report import (
    INSTALL_HINTS,
    JSON_FILE,
    PRODUCTS,
    TENANT,
    ProductSpec,
    report,
    text,
    write_json,
)
from keyturn.cli.serve import configure_logging, serve_until_stopped
from keyturn.config import ConfigError, Settings, load_settings
from keyturn.core.errors import DomainError
from keyturn.core.model import AccessKey, Product, Tenant
from keyturn.engines.local import LocalEngine, LocalEngineError, sweep
from keyturn.engines.local.mariadb import mariadb_installed, start_mariadb
from keyturn.engines.local.postgres import postgres_bindir, start_postgres
from keyturn.engines.local.redis import redis_binary, start_redis
from keyturn.service.admin import Admin
from keyturn.store.datadir import prepare_data_dir
from keyturn.store.rekey import DataDirLock

log = logging.getLogger("keyturn.sandbox")
ENGINES = ("redis", "postgres", "mariadb")


class _Stopped(Exception):
    """SIGINT or SIGTERM arrived: unwind, stopping what was started."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stopped


def sandbox(
    data_dir: DataDirOption = None,
    host: Annotated[str | None, typer.Option(envvar="KEYTURN_HOST", help="Listen address.")] = None,
    port: Annotated[int | None, typer.Option(envvar="KEYTURN_PORT", help="Listen port.")] = None,
    engines: Annotated[
        str,
        typer.Option(help="Engines to start, comma-separated: redis, postgres, mariadb."),
    ] = ",".join(ENGINES),
) -> None:
    """Serve keyturn in front of throwaway local engines, one instance of each product."""
    wanted = [name.strip() for name in engines.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(ENGINES))
    if unknown or not wanted:
        typer.echo(f"keyturn: --engines takes some of {', '.join(ENGINES)}", err=True)
        raise typer.Exit(2)
    try:
        settings = load_settings(data_dir=data_dir, host=host, port=port)
    except ConfigError as exc:
        typer.echo(f"keyturn: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level)
    prepare_data_dir(settings.data_dir)
    lock = DataDirLock(settings.data_dir)
    if not lock.acquire(exclusive=False):
        typer.echo(f"keyturn: a master key rotation is running on {settings.data_dir}", err=True)
        raise typer.Exit(2)
    own = _sandbox_lock(settings.data_dir)
    if own is None:
        lock.release()
        typer.echo(f"keyturn: a sandbox is already running on {settings.data_dir}", err=True)
        raise typer.Exit(2)
    try:
        _run(settings, wanted)
    finally:
        os.close(own)
        lock.release()


def _sandbox_lock(data_dir: Path) -> int | None:
    """An exclusive lock on ``DATA_DIR/sandbox.lock`` (None: another sandbox holds it), so
    that one sandbox never sweeps away another's engines."""
    fd = os.open(data_dir / "sandbox.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _run(settings: Settings, wanted: list[str]) -> None:
    # Absolute and resolved: engines' command lines carry it, and ``sweep`` looks for it there.
    root = settings.data_dir.resolve() / "sandbox"
    json_path = settings.data_dir / JSON_FILE
    json_path.unlink(missing_ok=True)
    left = sweep(root)
    if left:
        log.warning("stopped %d process(es) an earlier sandbox left running", len(left))
    root.mkdir(mode=0o700)
    started: dict[Product, LocalEngine] = {}
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        skipped = _start_engines(root, wanted, started)
        asyncio.run(_register_and_serve(settings, started, skipped, json_path))
    except _Stopped:
        pass
    except (LocalEngineError, ConfigError, DomainError) as exc:
        typer.echo(f"keyturn: {exc}", err=True)
        status = 2
    finally:
        # A second signal must not cut the clean-up short.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        _clean_up(settings, root, started, json_path)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if status:
        raise typer.Exit(status)


def _start_engines(
    root: Path, wanted: list[str], started: dict[Product, LocalEngine]
) -> dict[Product, str]:
    """Start an engine for each product whose engine is wanted and installed (filling
    ``started`` as they come up, so an interruption stops those); the rest, with why."""
    missing = {
        "redis": redis_binary() is None,
        "postgres": postgres_bindir() is None,
        "mariadb": not mariadb_installed(),
    }
    if "redis" in wanted and missing["redis"]:
        raise LocalEngineError(f"redis-server is not installed: {INSTALL_HINTS['redis']}")
    skipped: dict[Product, str] = {}
    for spec in PRODUCTS:
        if spec.engine not in wanted:
            skipped[spec.product] = f"not in --engines ({spec.engine})"
        elif missing[spec.engine]:
            skipped[spec.product] = f"{spec.engine} is not installed: {INSTALL_HINTS[spec.engine]}"
        else:
            log.info("starting %s for %s", spec.engine, spec.product)
            started[spec.product] = _launcher(spec)(root / str(spec.product))
    for product, why in skipped.items():
        typer.echo(f"keyturn sandbox: {product} skipped, {why}", err=True)
    return skipped


def _launcher(spec: ProductSpec) -> Callable[[Path], LocalEngine]:
    if spec.engine == "postgres":
        return start_postgres
    if spec.engine == "mariadb":
        return start_mariadb
    # Alibaba resets an ACL user of its own; the others reset ``default``.
    accounts = () if spec.account == "default" else (spec.account,)
    return lambda directory: start_redis(directory, accounts=accounts)


async def _register_and_serve(
    settings: Settings,
    started: dict[Product, LocalEngine],
    skipped: dict[Product, str],
    json_path: Path,
) -> None:
    store = await open_admin_store(settings)
    try:
        key = await _register(
            Admin(store), store_keys=await store.list_access_keys(TENANT), started=started
        )
    finally:
        await store.close()
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    document = report(
        endpoint=f"{settings.scheme}://{host}:{settings.port}",
        key_id=key.id,
        secret=key.secret.reveal(),
        addresses={p: (engine.address, engine.dir) for p, engine in started.items()},
        skipped=skipped,
    )

    def on_started() -> None:
        write_json(json_path, document)
        typer.echo(text(document, json_path), nl=False)

    await serve_until_stopped(settings, on_started)


async def _register(
    admin: Admin, *, store_keys: list[AccessKey], started: dict[Product, LocalEngine]
) -> AccessKey:
    """The sandbox tenant, its instances (replacing the last run's) and its access key: the
    first enabled one it has, else a new administrator key."""
    await admin.ensure_tenant(Tenant(id=TENANT, name="keyturn sandbox"))
    for spec in PRODUCTS:
        engine = started.get(spec.product)
        if engine is None:
            continue
        await admin.add_instance(
            tenant_id=TENANT,
            instance_id=spec.instance_id,
            product=spec.product,
            region=spec.region,
            node_urls=[engine.admin_url],
            name=f"sandbox {spec.product}",
        )
    for key in store_keys:
        if key.enabled and key.policies is None:
            return key
    return await admin.create_key(TENANT)


def _clean_up(
    settings: Settings, root: Path, started: dict[Product, LocalEngine], json_path: Path
) -> None:
    """Stop every engine, sweep what is left, forget the instances and remove the JSON file."""
    json_path.unlink(missing_ok=True)
    for product, engine in reversed(started.items()):
        try:
            engine.stop()
        except LocalEngineError as exc:
            log.warning("stopping the %s of %s: %s", engine.kind, product, exc)
    sweep(root)
    try:
        asyncio.run(_forget(settings))
    except Exception as exc:  # the engines are stopped; a stale record is only cosmetic
        log.warning("could not remove the sandbox instances: %s", type(exc).__name__)
    typer.echo("keyturn sandbox: stopped keyturn and every engine it started", err=True)


async def _forget(settings: Settings) -> None:
    """Remove the sandbox instances: their engines are gone."""
    store = await open_admin_store(settings)
    try:
        for spec in PRODUCTS:
            await store.remove_instance(spec.instance_id)
    finally:
        await store.close()
