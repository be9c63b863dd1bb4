"""Fixtures for end-to-end tests: keyturn servers that are always stopped at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.keyturn_server import KeyturnServer


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., KeyturnServer]]:
    servers: list[KeyturnServer] = []

    def make(**options: Any) -> KeyturnServer:
        server = KeyturnServer(tmp_path / f"keyturn-{len(servers)}", **options)
        servers.append(server)
        return server

    yield make
    for server in servers:
        if server.process is not None:
            server.kill()
