"""Fixtures for wire tests: a real keyturn server, driven through the official SDKs (the
passwords they set come from ``tests.support.passwords``, so the session can prove none
leaked). ``KEYTURN_TEST_STORE=postgres`` runs the module's server on a PostgreSQL store (a
fresh database on the session's throwaway PostgreSQL) instead of SQLite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.keyturn_server import KeyturnServer


@pytest.fixture(scope="module")
def keyturn(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KeyturnServer]:
    database_url = None
    if os.environ.get("KEYTURN_TEST_STORE") == "postgres":
        database_url = request.getfixturevalue("store_postgres").database()
    server = KeyturnServer(tmp_path_factory.mktemp("keyturn"), database_url=database_url)
    server.start()
    yield server
    if server.process is not None:
        server.stop()


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path
