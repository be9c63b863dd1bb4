"""A throwaway redis-server: a config file of its own (so keyturn's ``CONFIG REWRITE`` keeps the
ACL users it changes), no persistence, ``default`` with a random password, keyturn's admin user
(every command) and any extra accounts asked for. Users are declared with their SHA-256 in the
config file, so no password is ever written in clear.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Final
from urllib.parse import quote

from keyturn.core.secrets import Secret
from keyturn.engines.local.process import (
    LocalEngine,
    LocalEngineError,
    accepts,
    free_port,
    stop_process,
    wait_for,
)

ADMIN_USER: Final = "keyturn"
#: A data account: every data command, no administration.
DATA_RULES: Final = "~* &* +@all -@admin -@dangerous"


def redis_binary() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _user(name: str, password: Secret, rules: str) -> str:
    digest = hashlib.sha256(password.reveal().encode()).hexdigest()
    return f"user {name} on #{digest} {rules}"


def start_redis(directory: Path, *, accounts: tuple[str, ...] = ()) -> LocalEngine:
    """Start redis-server in ``directory`` (made here); ``accounts`` are extra data accounts."""
    binary = redis_binary()
    if binary is None:
        raise LocalEngineError("redis-server is not installed")
    directory.mkdir(mode=0o700, parents=True)
    port = free_port()
    admin = Secret(secrets.token_hex(16))
    passwords = {"default": Secret(secrets.token_hex(12))}
    passwords |= {name: Secret(secrets.token_hex(12)) for name in accounts}
    settings = {
        "port": str(port),
        "bind": "127.0.0.1",
        "protected-mode": "yes",
        "daemonize": "no",
        "save": "",
        "appendonly": "no",
        "dir": str(directory),
        "logfile": str(directory / "redis.log"),
        # The config file's path stays in the process title, where ``sweep`` looks for it.
        "proc-title-template": "{title} {listen-addr} {config-file}",
    }
    lines = [f"{key} {_quote(value)}" for key, value in settings.items()]
    lines.append(_user("default", passwords["default"], "~* &* +@all"))
    lines.append(_user(ADMIN_USER, admin, "~* &* +@all"))
    lines += [_user(name, passwords[name], DATA_RULES) for name in accounts]
    conf = directory / "redis.conf"
    conf.write_text("\n".join(lines) + "\n")
    conf.chmod(0o600)
    process = subprocess.Popen(
        [binary, str(conf)],
        cwd=directory,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C on the terminal is the sandbox's to handle
    )
    try:
        wait_for(
            lambda: accepts(port),
            "redis-server",
            timeout=20,
            alive=lambda: process.poll() is None,
            log=directory / "redis.log",
        )
    except BaseException:
        stop_process(process)
        raise
    url = f"redis://{ADMIN_USER}:{quote(admin.reveal(), safe='')}@127.0.0.1:{port}"
    return LocalEngine(
        kind="redis",
        port=port,
        dir=directory,
        admin_url=Secret(url),
        accounts=passwords,
        stop=lambda: stop_process(process),
    )
