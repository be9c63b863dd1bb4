"""The store's hot statements: compiled once, run on the driver (SQLite's, and psycopg's).

Every signed call runs a few statements: the rate window's count, the audit chain's tail and
its new record, a task read for a poll; a change adds the replay nonce and its task's insert,
write-ahead and finish. Through SQLAlchemy, a statement from its compiled cache still pays for
its execution machinery on every call (execution context, parameter construction, events,
result metadata): profiled on a signed read, 82% of the time in ``Connection.execute`` was
SQLAlchemy's and 18% sqlite3's own, together a fifth of the server's CPU. Here such a statement
is compiled once into its SQL text, the order of its parameters and their bind processors
(``TypeEngine.bind_processor``, so a timestamp is stored exactly as SQLAlchemy stores it); an
INSERT or UPDATE given no values of its own is compiled for the columns a call's parameters
name, as SQLAlchemy compiles it. Each call converts its parameters and runs it on the inline
connection's driver, in the same transaction (``InlineConnection.run_driver``: errors raised
as SQLAlchemy's, statements timed like the others). ``first_row`` hands back a plain tuple, for
results that need no conversion; ``first_record`` and ``records`` named tuples of a SELECT's
columns, each converted by its type's result processor (a timestamp's text becomes the same
``datetime`` SQLAlchemy gives). A statement with an expanding parameter (``IN`` a list) is
refused: its text is only made per call. On PostgreSQL (the asyncio engine on psycopg) the same
statements run on psycopg (``keyturn.store.pg_driver``) where the connection holds a
transaction or is in autocommit, else through SQLAlchemy. Imports: SQLAlchemy, this package's
inline engine and psycopg runner, observe's labels and the standard library.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from keyturn.core.errors import InternalError
from keyturn.store.inline import InlineConnection
from keyturn.store.observe import statement_kind


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A statement ready for the driver: text, parameter order, converters and defaults."""

    text: str
    names: tuple[str, ...]
    converters: tuple[Callable[[Any], Any] | None, ...]
    #: Values bound in the statement itself (``values(count=1)``), for names a call omits.
    defaults: Mapping[str, Any]
    kind: str
    #: A SELECT's row type (its columns' keys) and their result converters.
    record: Callable[..., Any] | None
    readers: tuple[Callable[[Any], Any] | None, ...]

    def as_record(self, row: tuple[Any, ...]) -> Any:
        if self.record is None:
            raise InternalError("only a SELECT's rows are read as records")
        return self.record(
            *(v if read is None else read(v) for v, read in zip(row, self.readers, strict=True))
        )

    def values(self, params: Mapping[str, Any]) -> list[Any]:
        out = []
        for name, convert in zip(self.names, self.converters, strict=True):
            value = params[name] if name in params else self.defaults[name]
            out.append(value if convert is None else convert(value))
        return out


def _record_type(keys: list[str]) -> Callable[..., Any]:
    """A named tuple type with ``keys`` as its fields (rows read by attribute, like ``Row``)."""
    made: Callable[..., Any] = namedtuple("Record", keys)  # type: ignore[misc]
    return made


#: Compiled statements by the identity of the statement object (module constants, or built
#: once per dialect), which the entry keeps alive so that its id is never reused, and, for an
#: INSERT or UPDATE, the parameters a call gives (they choose its columns, as in SQLAlchemy).
_COMPILED: dict[tuple[int, str, frozenset[str]], tuple[Any, _Compiled]] = {}
#: At most this many are kept (a statement is compiled for each set of columns it is given).
_MOST_COMPILED: Final = 256


def _compiled(statement: Any, dialect: Dialect, params: Mapping[str, Any]) -> _Compiled:
    dml = isinstance(statement, sa.Insert | sa.Update)
    given = frozenset(params) if dml else frozenset()
    key = (id(statement), dialect.name, given)
    found = _COMPILED.get(key)
    if found is not None and found[0] is statement:
        return found[1]
    compiled = statement.compile(dialect=dialect, column_keys=sorted(given) if dml else None)
    names = tuple(compiled.positiontup or ())
    binds = compiled.binds
    if any(bind.expanding for bind in binds.values()):
        raise InternalError("a statement with an expanding parameter is made per call")
    converters = tuple(
        binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    )
    record: Callable[..., Any] | None = None
    readers: tuple[Callable[[Any], Any] | None, ...] = ()
    if isinstance(statement, sa.Select):
        columns = list(statement.selected_columns)
        record = _record_type([str(column.key) for column in columns])
        readers = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        )
    made = _Compiled(
        text=compiled.string,
        names=names,
        converters=converters,
        defaults={name: value for name, value in compiled.params.items() if value is not None},
        kind=statement_kind(compiled.string),
        record=record,
        readers=readers,
    )
    if len(_COMPILED) >= _MOST_COMPILED:
        _COMPILED.clear()  # only a bug makes this many: start over rather than grow
    _COMPILED[key] = (statement, made)
    return made


async def _ran(
    conn: Any, statement: Any, params: Mapping[str, Any]
) -> tuple[_Compiled, list[Any]] | None:
    """``statement`` run on ``conn``'s driver (the inline SQLite engine's, or psycopg's:
    ``keyturn.store.pg_driver``): its compiled form and rows; None when SQLAlchemy must run
    it (another driver, or a PostgreSQL connection holding no transaction yet)."""
    if isinstance(conn, InlineConnection):
        compiled = _compiled(statement, conn.dialect, params)
        return compiled, conn.run_driver(compiled.text, compiled.values(params), compiled.kind)
    if getattr(getattr(conn, "dialect", None), "driver", None) != "psycopg":
        return None
    # Imported here: a node on SQLite never loads psycopg (measured: 18 MB more resident).
    from keyturn.store import pg_driver

    compiled = _compiled(statement, pg_driver.DIALECT, params)
    rows = await pg_driver.run(conn, compiled.text, compiled.values(params), compiled.kind)
    return None if rows is None else (compiled, rows)


async def first_row(conn: Any, statement: Any, params: Mapping[str, Any]) -> Any | None:
    """The first row ``statement`` returns with ``params`` (None if none): a plain tuple on a
    driver, SQLAlchemy's ``Row`` (also a tuple) through SQLAlchemy."""
    ran = await _ran(conn, statement, params)
    if ran is not None:
        return ran[1][0] if ran[1] else None
    return (await conn.execute(statement, params)).first()


async def first_record(conn: Any, statement: Any, params: Mapping[str, Any]) -> Any | None:
    """The first row of the SELECT ``statement`` with ``params`` (None if none), its columns
    by key and converted as SQLAlchemy converts them."""
    ran = await _ran(conn, statement, params)
    if ran is not None:
        compiled, rows = ran
        return compiled.as_record(rows[0]) if rows else None
    return (await conn.execute(statement, params)).first()


async def records(conn: Any, statement: Any, params: Mapping[str, Any]) -> list[Any]:
    """Every row of the SELECT ``statement`` with ``params``, read as ``first_record`` reads
    the first."""
    ran = await _ran(conn, statement, params)
    if ran is not None:
        compiled, rows = ran
        return [compiled.as_record(row) for row in rows]
    return list((await conn.execute(statement, params)).all())


async def run(conn: Any, statement: Any, params: Mapping[str, Any]) -> None:
    """Run ``statement`` with ``params`` for its effect."""
    if await _ran(conn, statement, params) is None:
        await conn.execute(statement, params)
