"""Fixtures for wire tests: a real keyturn server and real redis-servers, driven through the
official SDKs. Every password a test sets is recorded so the session can prove none leaked."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.keyturn_server import KeyturnServer

#: Plaintext passwords used by wire tests; checked against logs and data dirs at the end.
USED_PASSWORDS: list[str] = []


def new_password() -> str:
    password = "Kt-" + secrets.token_urlsafe(12) + "9a"
    USED_PASSWORDS.append(password)
    return password


@pytest.fixture(scope="module")
def keyturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyturnServer]:
    server = KeyturnServer(tmp_path_factory.mktemp("keyturn"))
    server.start()
    yield server
    if server.process is not None:
        server.stop()


def new_instance_id() -> str:
    return "crs-" + secrets.token_hex(4)


def leaked(server: KeyturnServer, passwords: list[str]) -> list[str]:
    haystacks = [server.log().encode(), server.data_bytes()]
    return [p for p in passwords if any(p.encode() in h for h in haystacks)]


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path
