"""Unit tests of ``keyturn.store.datadir.prepare_data_dir``: a new data dir is 0700 whatever
the umask, an existing one open to group or others is tightened (and the log says so), a
private one is left alone."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from keyturn.store.datadir import prepare_data_dir


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_data_dir_is_private(tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        prepare_data_dir(tmp_path / "a" / "data")
    finally:
        os.umask(old)
    assert mode(tmp_path / "a" / "data") == 0o700


@pytest.mark.parametrize(("before", "after"), [(0o755, 0o700), (0o777, 0o700), (0o750, 0o700)])
def test_an_open_data_dir_is_tightened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, before: int, after: int
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(before)
    with caplog.at_level(logging.WARNING):
        prepare_data_dir(data)
    assert mode(data) == after
    [record] = caplog.records
    assert f"mode {before:o}" in record.getMessage() and "tightened to 700" in record.getMessage()


def test_a_private_data_dir_is_left_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o700)
    with caplog.at_level(logging.DEBUG):
        prepare_data_dir(data)
    assert mode(data) == 0o700 and not caplog.records
