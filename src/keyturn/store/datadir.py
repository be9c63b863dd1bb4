"""The data dir on disk: private to the user keyturn runs as.

It holds the SQLite store, the master key (by default), the audit chain's marker and, after a
first start without a terminal, the first administrator key, so ``prepare_data_dir`` creates
it with mode 0700 and tightens an existing one that group or others can enter, read or write
(logging that it did; a directory it does not own is left as it is, with a warning). Imports:
the standard library.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

MODE: Final = 0o700


def prepare_data_dir(data_dir: Path) -> None:
    """Create ``data_dir`` (0700, parents as the umask says) or make an existing one 0700."""
    try:
        data_dir.mkdir(mode=MODE, parents=True)
    except FileExistsError:
        pass
    else:
        os.chmod(data_dir, MODE)  # the umask may have taken bits away from 0700 itself
        return
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    if not mode & (stat.S_IRWXG | stat.S_IRWXO):
        return
    try:
        os.chmod(data_dir, mode & ~(stat.S_IRWXG | stat.S_IRWXO))
    except OSError as exc:
        log.warning(
            "the data dir %s is accessible to group or others (mode %o) and could not be"
            " tightened (%s): chmod 700 it",
            data_dir,
            mode,
            exc.strerror,
        )
        return
    log.warning(
        "the data dir %s was accessible to group or others (mode %o): tightened to %o",
        data_dir,
        mode,
        mode & ~(stat.S_IRWXG | stat.S_IRWXO),
    )
