"""Free loopback ports for throwaway servers, never one of the machine's shared services."""

from __future__ import annotations

import socket
from typing import Final

#: The shared Redis, PostgreSQL and MariaDB of this machine: never touched by tests.
SHARED_PORTS: Final = frozenset({6379, 5432, 3306})
#: How many ports a server tries on its very first start (``lost_port_race``).
FIRST_START_TRIES: Final = 5


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in SHARED_PORTS:
            return port


def lost_port_race(log: str) -> bool:
    """Whether a server's log says it could not bind its port: another process took it
    between ``free_port`` and the server's bind (Redis: "Address already in use"; uvicorn:
    "[Errno 98] ... address already in use"). On its very first start a server then tries
    another port (``FIRST_START_TRIES`` in all); later starts keep the port clients know."""
    return "address already in use" in log.lower()
