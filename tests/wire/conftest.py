"""Fixtures for wire tests: a real keyturn server, driven through the official SDKs (the
passwords they set come from ``tests.support.passwords``, so the session can prove none
leaked)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.keyturn_server import KeyturnServer


@pytest.fixture(scope="module")
def keyturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyturnServer]:
    server = KeyturnServer(tmp_path_factory.mktemp("keyturn"))
    server.start()
    yield server
    if server.process is not None:
        server.stop()


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path
