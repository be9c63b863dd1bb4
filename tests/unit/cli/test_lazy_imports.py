"""The server's idle memory (issue #14, scenario 5: under 80 MB): loading the command line and
the composition root, as ``keyturn serve`` does, must not load the drivers of engines that only
the sandbox or an inventory with such instances needs (psycopg, PyMySQL, aiomysql: several MB
of resident memory each), nor what only a PostgreSQL store needs. Checked in a fresh
interpreter, since this test session has loaded them long ago."""

from __future__ import annotations

import json
import subprocess
import sys

#: SQLAlchemy's PostgreSQL dialect and asyncio extension: about 2 MB each, for a PostgreSQL
#: store only (a ``postgresql_where`` in the schema or a module-level import loaded them).
HEAVY = (
    "psycopg",
    "pymysql",
    "aiomysql",
    "sqlalchemy.dialects.postgresql",
    "sqlalchemy.ext.asyncio",
)


def test_serve_loads_no_sql_engine_driver() -> None:
    probe = (
        "import json, sys; import keyturn.cli, keyturn.bootstrap; "
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == []
