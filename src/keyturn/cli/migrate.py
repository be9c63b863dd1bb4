"""``keyturn migrate``: bring the store's schema to the newest revision and exit.

``keyturn serve`` migrates on start too; this command lets a deployment migrate once, before it
starts (or rolls) its nodes. On PostgreSQL it takes the same start-up lock as ``serve``
(``keyturn.store.startup``), so it never migrates alongside a starting node. It opens only the
store's database: no master key or data dir is needed for a PostgreSQL store.
"""

from __future__ import annotations

import asyncio

import typer
from sqlalchemy.exc import SQLAlchemyError

from keyturn.bootstrap import store_url_of
from keyturn.cli.options import ConfigOption, DataDirOption
from keyturn.config import ConfigError, Settings, load_settings
from keyturn.core.errors import DomainError, InternalError, StoreUnavailable
from keyturn.store.datadir import prepare_data_dir
from keyturn.store.migrate import SCHEMA_HEAD, current_revision, ensure_schema, store_url
from keyturn.store.startup import startup_lock


def migrate(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Migrate the store to the newest schema (serve also does it on start)."""
    try:
        settings = load_settings(config=config, data_dir=data_dir)
        before, after = asyncio.run(_migrate(settings))
    except (ConfigError, DomainError) as exc:
        typer.echo(f"keyturn: {exc}", err=True)
        raise typer.Exit(2) from None
    if before == after:
        typer.echo(f"keyturn: the store is at revision {after}, the newest")
    else:
        typer.echo(f"keyturn: the store was migrated from revision {before or 'none'} to {after}")


async def _migrate(settings: Settings) -> tuple[str | None, str | None]:
    url = store_url(store_url_of(settings))
    if settings.database_url is None:
        prepare_data_dir(settings.data_dir)  # the SQLite file lives there
    timeout = settings.store_timeout
    async with startup_lock(url, timeout):
        try:
            before = await asyncio.to_thread(current_revision, url, timeout)
            await asyncio.to_thread(ensure_schema, url, timeout)
            after = await asyncio.to_thread(current_revision, url, timeout)
        except RuntimeError as exc:  # the migration child failed; its output is the message
            raise InternalError(str(exc)) from None
        except SQLAlchemyError as exc:
            raise StoreUnavailable("the store database could not be reached") from exc
    if after != SCHEMA_HEAD:
        raise InternalError(f"the store is at revision {after}, not {SCHEMA_HEAD}")
    return before, after
