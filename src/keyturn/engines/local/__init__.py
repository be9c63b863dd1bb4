"""Throwaway local engine servers for ``keyturn sandbox``: redis-server, PostgreSQL (initdb +
pg_ctl) and MariaDB (mariadb-install-db + mariadbd), each on a free 127.0.0.1 port with a
random admin password and one account to reset.

These are not adapters behind the ``Engine`` port: they start and stop real server processes
so that a newcomer can see keyturn reset passwords without a database of their own. Every
process is started from a directory of its own whose path is in its command line, so a later
run can find (``sweep``) and stop what a killed run left behind, and nothing else. Imports: the
standard library, psycopg and PyMySQL.
"""

from keyturn.engines.local.process import LocalEngine, LocalEngineError, sweep

__all__ = ["LocalEngine", "LocalEngineError", "sweep"]
