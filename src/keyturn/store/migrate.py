"""Schema migrations, applied programmatically with Alembic (no ``alembic.ini``).

``upgrade(url)`` brings the database at ``url`` to the newest revision; it is idempotent and is
called at server start (``keyturn.store.sql.open_store``) and by ``keyturn migrate``. The
migration environment runs on a synchronous driver derived from the async URL (``sync_url``).
Imports: Alembic, SQLAlchemy and the standard library.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

import sqlalchemy as sa
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

if TYPE_CHECKING:
    from alembic.config import Config

#: The newest migration shipped (a test pins it to Alembic's head). A database already at this
#: revision is opened without importing Alembic, which keeps start-up fast and memory low.
SCHEMA_HEAD: Final = "0008"
MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
#: The ``Config.attributes`` key under which ``env.py`` finds the database URL.
URL_ATTRIBUTE: Final = "keyturn_url"

#: Async drivers and the synchronous drivers Alembic runs on instead.
_SYNC_DRIVERS: Final = {
    "sqlite+aiosqlite": "sqlite",
    "postgresql+asyncpg": "postgresql+psycopg",
}


def sync_url(url: str | URL) -> URL:
    """The synchronous equivalent of an async URL (``sqlite+aiosqlite`` -> ``sqlite``);
    drivers that are both (``postgresql+psycopg``) are kept."""
    parsed = make_url(url)
    driver = _SYNC_DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver) if driver else parsed


def alembic_config(url: str) -> Config:
    """An Alembic configuration built in code, pointing at this package's migrations."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    # Passed as an attribute, not an option: URLs may contain '%', which ConfigParser mangles.
    config.attributes[URL_ATTRIBUTE] = url
    return config


def upgrade(url: str) -> None:
    """Apply every pending migration to the database at ``url`` (a no-op when up to date)."""
    if current_revision(url) == SCHEMA_HEAD:
        return
    from alembic import command

    command.upgrade(alembic_config(url), "head")


def ensure_schema(url: str) -> None:
    """Bring the database to ``SCHEMA_HEAD``; pending migrations run in a child process, so
    the server never loads Alembic (about 8 MB that would stay resident). The URL travels in
    the environment, not on the command line, because it may hold a password."""
    if current_revision(url) == SCHEMA_HEAD:
        return
    env = {**os.environ, _URL_ENV: url}
    done = subprocess.run(
        [sys.executable, "-m", "keyturn.store.migrate"], env=env, capture_output=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            "migrating the store failed: " + done.stderr.decode(errors="replace")[-2000:]
        )


_URL_ENV: Final = "KEYTURN_MIGRATE_URL"


def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at, or None before the first migration."""
    engine = create_engine(sync_url(url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table("alembic_version"):
                return None
            found = connection.scalar(sa.text("SELECT version_num FROM alembic_version"))
            return None if found is None else str(found)
    finally:
        engine.dispose()


def head_revision() -> str | None:
    """The newest revision shipped with this package."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


if __name__ == "__main__":
    upgrade(os.environ[_URL_ENV])
