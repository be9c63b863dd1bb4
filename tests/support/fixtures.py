"""Pytest fixtures for real engines, loaded as a plugin (``pytest_plugins`` or ``-p``).

``redis_server`` is a password-protected throwaway redis-server with a config file, one per test.
``redis_server_factory`` starts more, with other options (no password, an ``aclfile``, no config
file), and stops them all after the test. A missing ``redis-server`` binary skips the test
locally, but in CI (``CI`` set) it fails the test: an engine test must never pass unseen.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests.support.redis_server import RedisServer, RedisServerError, redis_server_binary

#: ``redis_server_factory(password=..., aclfile=..., config_file=...)`` -> started server.
RedisServerFactory = Callable[..., RedisServer]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_binary(name: str, found: str | None) -> str:
    """``found``, or fail (CI) / skip (locally) the test when the engine is not installed."""
    if found is None:
        message = f"{name} is not installed"
        if in_ci():
            pytest.fail(f"{message}; engine tests are never skipped in CI", pytrace=False)
        pytest.skip(message)
    return found


@pytest.fixture
def redis_server_factory() -> Iterator[RedisServerFactory]:
    binary = require_binary("redis-server", redis_server_binary())
    started: list[RedisServer] = []

    def make(
        *,
        password: str | bool | None = True,
        aclfile: bool = False,
        config_file: bool = True,
    ) -> RedisServer:
        """``password=True`` generates one; ``None`` or ``False`` leaves ``default`` nopass."""
        secret = RedisServer.new_password() if password is True else None
        if isinstance(password, str) and password:
            secret = password
        server = RedisServer(
            password=secret,
            aclfile=aclfile,
            config_file=config_file,
            binary=binary,
        )
        started.append(server)
        try:
            server.start()
        except RedisServerError as exc:
            pytest.fail(f"could not start redis-server: {exc}", pytrace=False)
        return server

    yield make
    for server in started:
        server.close()


@pytest.fixture
def redis_server(redis_server_factory: RedisServerFactory) -> RedisServer:
    """A started redis-server with a generated ``default`` password and a config file."""
    return redis_server_factory()
