"""A throwaway PostgreSQL server: ``initdb`` (SCRAM-SHA-256 for every login, the ``postgres``
superuser's random password from a 0600 file deleted right after), a config of its own
(127.0.0.1 on a free port, no unix socket, fsync off: the data is throwaway), ``pg_ctl start``,
then a login role ``app`` to reset, its password sent as a SCRAM verifier computed here. As root
every command runs as the ``postgres`` OS user and the files live in a private directory
(``keyturn.engines.local.process.private_dir``). Stopped with ``pg_ctl stop -m fast``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Final
from urllib.parse import quote

from keyturn.core.secrets import Secret
from keyturn.engines.local.process import (
    LocalEngine,
    LocalEngineError,
    as_user,
    free_port,
    os_user,
    private_dir,
    run,
    write_private,
)

SUPERUSER: Final = "postgres"
ACCOUNT: Final = "app"
_BINDIRS: Final = (
    "/usr/lib/postgresql/17/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/15/bin",
)


def postgres_bindir() -> str | None:
    """The directory holding initdb, pg_ctl and postgres (``KEYTURN_PG_BINDIR`` first)."""
    configured = os.environ.get("KEYTURN_PG_BINDIR")
    for bindir in (*([configured] if configured else []), *_BINDIRS):
        if all(os.access(os.path.join(bindir, b), os.X_OK) for b in ("initdb", "pg_ctl")):
            return bindir
    return None


def _conf(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def start_postgres(link: Path) -> LocalEngine:
    """initdb and start a server whose files ``link`` (in the sandbox dir, made here) points at."""
    # psycopg is imported here: ``keyturn serve`` loads this module with the command line, and
    # the driver would cost a server that never runs a sandbox several MB of resident memory.
    import psycopg
    from psycopg import sql

    bindir = postgres_bindir()
    if bindir is None:
        raise LocalEngineError("PostgreSQL is not installed")
    user = os_user(SUPERUSER)
    directory = private_dir(link, user)
    data, log = directory / "data", directory / "postgresql.log"
    password = Secret(secrets.token_hex(16))
    pwfile = directory / "pwfile"
    write_private(pwfile, password.reveal() + "\n", user)
    try:
        run(
            as_user(
                [
                    f"{bindir}/initdb",
                    *("-D", str(data), "-U", SUPERUSER, f"--pwfile={pwfile}"),
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                user,
            ),
            "initdb",
        )
    finally:
        pwfile.unlink(missing_ok=True)
    port = free_port()
    settings = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": str(directory),
        "password_encryption": "scram-sha-256",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "50",
    }
    with (data / "postgresql.conf").open("a") as conf:
        conf.write("\n" + "".join(f"{k} = {_conf(v)}\n" for k, v in settings.items()))
    pg_ctl = f"{bindir}/pg_ctl"
    run(
        as_user([pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "start"], user),
        "pg_ctl start",
        timeout=70,
    )

    def stop() -> None:
        if (data / "postmaster.pid").exists():
            run(
                as_user([pg_ctl, "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop"], user),
                "pg_ctl stop",
                timeout=40,
            )

    admin = (
        f"postgresql://{SUPERUSER}:{quote(password.reveal(), safe='')}@127.0.0.1:{port}/postgres"
    )
    try:
        account = Secret(secrets.token_hex(12))
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            verifier = conn.pgconn.encrypt_password(
                account.reveal().encode(), ACCOUNT.encode(), b"scram-sha-256"
            ).decode()
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(ACCOUNT), sql.Literal(verifier)
                )
            )
    except psycopg.Error as exc:
        stop()
        raise LocalEngineError(
            f"creating the role {ACCOUNT!r} failed: {type(exc).__name__}"
        ) from None
    except BaseException:
        stop()
        raise
    return LocalEngine(
        kind="postgres",
        port=port,
        dir=directory,
        admin_url=Secret(admin),
        accounts={ACCOUNT: account},
        stop=stop,
    )
