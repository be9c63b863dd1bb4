"""Unit tests of ``keyturn.cli.firstkey``: the first administrator key goes to the terminal
when stdout is one, else to a 0600 file in the data dir, and the log names only the file and
the key id."""

from __future__ import annotations

import io
import logging
import stat
from pathlib import Path

import pytest

from keyturn.cli.firstkey import KEY_FILE, hand_over_first_key
from keyturn.core.model import AccessKey
from keyturn.core.secrets import Secret

KEY = AccessKey(
    id="AKIDfirst0001", tenant_id="1300000000", secret=Secret("First-Secret-0123456789")
)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_the_key_and_no_file_is_written(tmp_path: Path) -> None:
    out = Terminal()
    hand_over_first_key(KEY, tmp_path, out)
    assert "SecretId  AKIDfirst0001" in out.getvalue()
    assert "SecretKey First-Secret-0123456789" in out.getvalue()
    assert not (tmp_path / KEY_FILE).exists()


def test_without_a_terminal_the_key_goes_to_a_private_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = io.StringIO()  # a pipe: isatty() is False
    (tmp_path / KEY_FILE).write_text("an older key")  # replaced, never appended to
    with caplog.at_level(logging.INFO):
        hand_over_first_key(KEY, tmp_path, out)
    assert out.getvalue() == ""
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "SecretKey First-Secret-0123456789" in text and "older" not in text
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]  # no temporary file left
    [record] = caplog.records
    message = record.getMessage()
    assert str(path) in message and KEY.id in message
    assert "First-Secret" not in message
