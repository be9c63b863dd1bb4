"""Run the ``keyturn`` command line as an operator does, in a child process.

``keyturn_cli`` runs ``python -m keyturn ARGS [--data-dir DIR]`` to completion and returns its
exit code and text output; ``audit_cli`` and ``audit_records`` run ``keyturn audit`` on a
server's data dir (the records as JSON objects).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.support.keyturn_server import KeyturnServer


def keyturn_cli(
    data_dir: Path | None, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``keyturn ARGS`` (with ``--data-dir`` when given), environment extended by ``env``."""
    where = [] if data_dir is None else ["--data-dir", str(data_dir)]
    return subprocess.run(
        [sys.executable, "-m", "keyturn", *args, *where],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=60,
    )


def audit_cli(
    server: KeyturnServer | Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``keyturn audit ARGS`` on the server's (or the given) data dir."""
    data_dir = server if isinstance(server, Path) else server.data_dir
    return keyturn_cli(data_dir, "audit", *args, env=env)


def audit_records(server: KeyturnServer, *args: str) -> list[dict[str, Any]]:
    """The records ``keyturn audit ARGS --json`` prints (it must succeed)."""
    done = audit_cli(server, *args, "--json")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]
