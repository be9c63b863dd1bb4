"""Free loopback ports for throwaway servers, never one of the machine's shared services."""

from __future__ import annotations

import socket
from typing import Final

#: The shared Redis, PostgreSQL and MariaDB of this machine: never touched by tests.
SHARED_PORTS: Final = frozenset({6379, 5432, 3306})


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in SHARED_PORTS:
            return port
