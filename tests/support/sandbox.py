"""Run ``keyturn sandbox`` as a user does, in a child process, and check what it leaves behind.

``SandboxRun`` starts the command (``python -m keyturn`` by default, or an installed
``keyturn`` script) on a data dir and a free port, its output to a log file, and ``wait_ready``
returns the ``sandbox.json`` it writes once serving. ``stop`` sends SIGTERM and waits;
``leftovers`` lists every process whose command line is inside the data dir or one of the
engines' directories, and every port of the run that still accepts connections.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.support.ports import free_port

#: Starting PostgreSQL and MariaDB takes seconds; a loaded machine can make it many more.
READY_TIMEOUT = 180.0


def processes_under(dirs: Sequence[Path]) -> list[str]:
    """``pid command line`` of every process (not this one) naming a path inside ``dirs``."""
    needles = [f"{d}/" for d in dirs]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(needle in line for needle in needles):
            found.append(f"{entry.name} {line}")
    return found


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class SandboxRun:
    """One ``keyturn sandbox`` process on ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        command: Sequence[str] = (sys.executable, "-m", "keyturn"),
        engines: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``env`` replaces the environment (default: this process's)."""
        self.data_dir = data_dir
        self.port = free_port()
        self.log_path = data_dir.parent / f"{data_dir.name}-sandbox-{self.port}.log"
        argv = [*command, "sandbox", "--data-dir", str(data_dir), "--port", str(self.port)]
        if engines is not None:
            argv += ["--engines", engines]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(os.environ if env is None else env),
            )
        self.document: dict[str, Any] = {}

    @property
    def json_path(self) -> Path:
        return self.data_dir / "sandbox.json"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        """The JSON file this process wrote, once written (the server listens then); one a
        killed earlier run left behind names another pid."""
        deadline = time.monotonic() + timeout
        while True:
            if self.json_path.exists():
                document: dict[str, Any] = json.loads(self.json_path.read_text())
                if document["pid"] == self.process.pid:
                    self.document = document
                    return document
            if self.process.poll() is not None:
                raise AssertionError(f"keyturn sandbox exited early:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no sandbox.json after {timeout} s:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    @property
    def engine_dirs(self) -> list[Path]:
        """Every engine directory the JSON names or the sandbox directory links to."""
        found = [Path(entry["dir"]) for entry in self.document.get("products", {}).values()]
        root = self.data_dir / "sandbox"
        if root.is_dir():
            found += [entry.resolve() for entry in root.iterdir() if entry.is_symlink()]
        return sorted(set(found))

    @property
    def ports(self) -> list[int]:
        ports = [self.port]
        for entry in self.document.get("products", {}).values():
            ports.append(int(entry["address"].rsplit(":", 1)[1]))
        return ports

    def stop(self, timeout: float = 120.0) -> int:
        """SIGTERM, and the exit status once it exited."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def leftovers(self) -> tuple[list[str], list[int]]:
        """(processes inside the data dir or an engine's directory, ports still open)."""
        processes = processes_under([self.data_dir, *self.engine_dirs])
        return processes, [port for port in self.ports if accepts(port)]

    def kill(self) -> None:
        """Teardown of a test that failed half-way: SIGKILL the sandbox, then SIGTERM every
        process it started (found by directory, as it would on its next start)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        for line in processes_under([self.data_dir, *self.engine_dirs]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line.split(" ", 1)[0]), signal.SIGTERM)
