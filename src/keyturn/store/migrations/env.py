"""Alembic environment for the keyturn store, run by ``keyturn.store.migrate``.

The database URL comes from ``Config.attributes`` (there is no ``alembic.ini``) and is turned
into its synchronous equivalent, so the same async URL serves the application and the
migrations. Migrations target ``keyturn.store.schema.metadata``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from keyturn.store.migrate import DEFAULT_TIMEOUT, URL_ATTRIBUTE, connect_args, sync_url
from keyturn.store.schema import metadata

config = context.config


def _url() -> str:
    url = config.attributes.get(URL_ATTRIBUTE) or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL given to the keyturn migrations")
    return str(url)


def run_migrations_offline() -> None:
    """Emit the SQL instead of running it (``alembic upgrade --sql``)."""
    context.configure(
        url=sync_url(_url()),
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = _url()
    # No statement timeout: a migration may rightly take longer than a request.
    engine = create_engine(
        sync_url(url),
        poolclass=NullPool,
        connect_args=connect_args(url, DEFAULT_TIMEOUT, statements=False),
    )
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=metadata,
                render_as_batch=connection.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
