"""Schema migrations, applied programmatically with Alembic (no ``alembic.ini``).

``upgrade(url)`` brings the database at ``url`` to the newest revision; it is idempotent and is
called at server start (``keyturn.store.opening.open_store``) and by ``keyturn migrate``. The
migration environment runs on a synchronous driver derived from the async URL (``sync_url``).
``store_url`` accepts ``postgresql://``, ``postgres://`` and ``postgresql+psycopg://`` and names
SQLAlchemy's psycopg 3 dialect, which serves the asyncio engine and the migrations alike.
Several nodes starting at once on one PostgreSQL migrate one at a time: ``keyturn.store.startup``
holds a session advisory lock (``STARTUP_LOCK``) around migration and inventory reconciliation.
Imports: Alembic, SQLAlchemy and the standard library.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

if TYPE_CHECKING:
    from alembic.config import Config

#: The newest migration shipped (a test pins it to Alembic's head). A database already at this
#: revision is opened without importing Alembic, which keeps start-up fast and memory low.
SCHEMA_HEAD: Final = "0017"
MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
#: The ``Config.attributes`` key under which ``env.py`` finds the database URL.
URL_ATTRIBUTE: Final = "keyturn_url"

#: Async drivers and the synchronous drivers Alembic runs on instead.
_SYNC_DRIVERS: Final = {
    "sqlite+aiosqlite": "sqlite",
    "postgresql+asyncpg": "postgresql+psycopg",
}
#: Seconds a connection may take to open (and a statement to run) unless told otherwise.
DEFAULT_TIMEOUT: Final = 5.0
#: PostgreSQL URL schemes accepted in ``KEYTURN_DATABASE_URL``, all served by psycopg 3.
_POSTGRES_SCHEMES: Final = ("postgresql", "postgres", "postgresql+psycopg")
#: The key of the PostgreSQL advisory lock held while a node migrates and reconciles
#: (arbitrary, fixed; ``keyturn.store.startup``).
STARTUP_LOCK: Final = 0x6B74_6D69_6772_6174


def store_url(url: str) -> str:
    """``url`` with a PostgreSQL scheme (``postgresql://``, ``postgres://``,
    ``postgresql+psycopg://``) spelled as SQLAlchemy's psycopg 3 dialect
    (``postgresql+psycopg://``); any other URL unchanged."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in _POSTGRES_SCHEMES:
        return "postgresql+psycopg://" + rest
    return url


def connect_args(url: str | URL, timeout: float, *, statements: bool = True) -> dict[str, Any]:
    """libpq connection parameters bounding how long a PostgreSQL store may keep a caller
    waiting: ``connect_timeout``, TCP keepalives and ``tcp_user_timeout`` (a connection whose
    peer vanished is dropped), and, with ``statements``, a ``statement_timeout`` (not for
    migrations and the start-up lock, which may rightly wait longer). Nothing for SQLite."""
    if sync_url(url).get_backend_name() != "postgresql":
        return {}
    seconds = max(2, math.ceil(timeout))  # libpq's smallest connect_timeout is 2 s
    args: dict[str, Any] = {
        "connect_timeout": seconds,
        "application_name": "keyturn",
        "keepalives": 1,
        "keepalives_idle": seconds,
        "keepalives_interval": 1,
        "keepalives_count": 3,
        "tcp_user_timeout": int(timeout * 1000),
    }
    if statements:
        args["options"] = f"-c statement_timeout={int(timeout * 1000)}"
    return args


def sync_url(url: str | URL) -> URL:
    """The synchronous equivalent of an async URL (``sqlite+aiosqlite`` -> ``sqlite``);
    drivers that are both (``postgresql+psycopg``) are kept."""
    parsed = make_url(store_url(url) if isinstance(url, str) else url)
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


def ensure_schema(url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Bring the database to ``SCHEMA_HEAD``; pending migrations run in a child process, so
    the server never loads Alembic (about 8 MB that would stay resident). The URL travels in
    the environment, not on the command line, because it may hold a password."""
    if current_revision(url, timeout) == SCHEMA_HEAD:
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


def current_revision(url: str, timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """The revision the database at ``url`` is at, or None before the first migration."""
    engine = create_engine(
        sync_url(url), poolclass=NullPool, connect_args=connect_args(url, timeout)
    )
    try:
        with engine.connect() as connection:
            # The catalogs, not ``sa.inspect``: the inspector imports SQLAlchemy's ORM lazily,
            # which is not safe from two threads at once (stores opened concurrently).
            exists = (
                "SELECT to_regclass('alembic_version') IS NOT NULL"
                if connection.dialect.name == "postgresql"
                else "SELECT count(*) FROM sqlite_master WHERE name = 'alembic_version'"
            )
            if not connection.scalar(sa.text(exists)):
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
