"""What every local engine launcher shares: free ports, running a command as the engine's OS
user, private directories, waiting for a port, stopping a process and sweeping up after a run
that was killed.

PostgreSQL refuses to run as root and MariaDB drops to its own user, so when keyturn runs as
root their commands run as ``postgres`` (through ``runuser``) and their files belong to
``postgres`` / ``mysql``. Those users cannot enter keyturn's data dir (mode 0700), so their
files live in a private directory under the system's temporary directory (``private_dir``),
linked from the sandbox directory; the link is how ``sweep`` finds them again.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from keyturn.core.secrets import Secret

#: The machine's standard engine ports: never handed out, whatever the kernel says.
_STANDARD_PORTS: Final = frozenset({6379, 5432, 3306})


class LocalEngineError(RuntimeError):
    """An engine could not be set up, started or stopped (the message names the step and
    ends with the tail of its output or log, which holds no password)."""


@dataclass(slots=True)
class LocalEngine:
    """A running throwaway engine server. ``admin_url`` logs in as the admin keyturn uses;
    ``accounts`` maps each account made for resets to its first password."""

    kind: str
    port: int
    dir: Path
    admin_url: Secret
    accounts: dict[str, Secret] = field(default_factory=dict)
    stop: Callable[[], None] = lambda: None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _STANDARD_PORTS:
            return port


def os_user(name: str) -> str | None:
    """``name`` when running as root (the engine must run as it), else None (run as we are)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise LocalEngineError(f"the OS user {name!r} does not exist") from None
    return name


def as_user(argv: list[str], user: str | None) -> list[str]:
    return argv if user is None else ["runuser", "-u", user, "--", *argv]


def chown(path: Path, user: str | None) -> None:
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def private_dir(link: Path, user: str | None) -> Path:
    """A new 0700 directory under the temporary directory, owned by ``user``, and ``link`` (in
    the sandbox directory) pointing at it."""
    path = Path(tempfile.mkdtemp(prefix=f"keyturn-sandbox-{link.name}-"))
    chown(path, user)
    link.symlink_to(path, target_is_directory=True)
    return path


def write_private(path: Path, text: str, user: str | None) -> None:
    """``text`` in a new file readable by its owner only, owned by ``user``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    chown(path, user)


def run(
    argv: list[str], what: str, *, timeout: float = 120.0, env: dict[str, str] | None = None
) -> None:
    """Run ``argv`` to completion; a failure names ``what`` and ends with its output."""
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LocalEngineError(f"{what} failed: {exc}") from None
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace")[-1500:]
        raise LocalEngineError(f"{what} failed with status {done.returncode}:\n{output}")


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_for(
    ready: Callable[[], bool],
    what: str,
    *,
    timeout: float = 60.0,
    alive: Callable[[], bool] = lambda: True,
    log: Path | None = None,
) -> None:
    """Poll ``ready`` until it holds; fail if ``alive`` stops holding or time runs out."""
    deadline = time.monotonic() + timeout
    while not ready():
        if not alive():
            raise LocalEngineError(f"{what} exited:\n{tail(log) if log else ''}")
        if time.monotonic() > deadline:
            raise LocalEngineError(
                f"{what} not ready in {timeout:g} s:\n{tail(log) if log else ''}"
            )
        time.sleep(0.05)


def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM ``process`` (a child of ours) and wait for it; SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


# --------------------------------------------------------------------------- the sweep


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def processes_under(dirs: Iterable[Path]) -> list[int]:
    """Pids (never ours) whose command line names a path inside one of ``dirs``."""
    needles = [f"{d}/" for d in dirs]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        line = _cmdline(int(entry.name))
        if any(needle in line for needle in needles):
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is dead for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def sandbox_dirs(root: Path) -> list[Path]:
    """``root`` and the private directories its links point at (see ``private_dir``)."""
    dirs = [root.resolve()]
    if root.is_dir():
        for entry in root.iterdir():
            if entry.is_symlink():
                dirs.append(entry.resolve())
    return dirs


def sweep(root: Path, timeout: float = 20.0) -> list[int]:
    """Stop every process whose command line is inside ``root`` or its private directories
    (what a killed run left running), SIGTERM first, SIGKILL after ``timeout``, then remove
    those directories. Returns the pids that were found."""
    dirs = sandbox_dirs(root)
    pids = processes_under(dirs)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for path in dirs[1:]:
        if path.name.startswith("keyturn-sandbox-"):
            shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    return pids
