"""Handing over the administrator key ``keyturn serve`` creates on its first start.

The secret is shown once and never logged. On a terminal it is printed there; otherwise
stdout is a pipe or a file that a service manager (systemd's journal, docker logs, a CI log)
keeps, so the secret goes to ``<data dir>/initial-admin-key.txt`` instead, created with mode
0600 (replacing an older one atomically), and the log says only where it is and which key it
is. The operator reads it and deletes the file.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Final, TextIO

from keyturn.core.model import AccessKey
from keyturn.store.sealing import fsync_dir

log = logging.getLogger("keyturn.serve")

KEY_FILE: Final = "initial-admin-key.txt"


def _text(key: AccessKey) -> str:
    return (
        "keyturn: created an administrator access key for the default tenant "
        f"{key.tenant_id}:\n  SecretId  {key.id}\n  SecretKey {key.secret.reveal()}\n"
        "  (shown once; manage keys with `keyturn keys ...`)\n"
    )


def hand_over_first_key(key: AccessKey, data_dir: Path, out: TextIO | None = None) -> None:
    """Show ``key`` on the terminal if ``out`` (stdout) is one, else write it to a 0600 file
    in ``data_dir`` and log where."""
    out = sys.stdout if out is None else out
    if out.isatty():
        out.write(_text(key))
        out.flush()
        return
    path = write_key_file(
        data_dir, _text(key) + "Delete this file once the key is stored safely.\n"
    )
    log.warning(
        "created administrator access key %s for the default tenant %s; stdout is not a"
        " terminal, so its secret is in %s (mode 0600): read it, then delete the file",
        key.id,
        key.tenant_id,
        path,
    )


def write_key_file(data_dir: Path, text: str) -> Path:
    """``text`` in ``data_dir/initial-admin-key.txt``, 0600 from its creation, durably."""
    path = data_dir / KEY_FILE
    temp = data_dir / f".{KEY_FILE}.tmp"
    temp.unlink(missing_ok=True)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    fsync_dir(data_dir)
    return path
