"""Fresh Redis logins: the proof step of every verification, on a bare connection of its own.

A verification must not ride on keyturn's pooled admin connection: it opens a new connection,
sends ``AUTH`` as the account (or nothing, for password-free) and, without a password, a
``PING`` that must pass. A bare ``Connection`` is used rather than a client, because building a
``Redis`` client with its pool costs more CPU than the login itself. It imports only
``keyturn.core``, ``keyturn.engines`` and redis-py.
"""

from __future__ import annotations

import contextlib

from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError

from keyturn.core.errors import VerificationFailed
from keyturn.core.model import NodeAddress
from keyturn.core.secrets import Secret
from keyturn.engines.base import engine_call
from keyturn.engines.redis_acl import classify

#: The account that needs no AUTH; the only account of Redis before 6.
DEFAULT_USER = "default"
#: AUTH password sent to check a non-default ``nopass`` user, which accepts any password.
_NOPASS_PROBE = "keyturn-nopass-probe"


def auth_args(username: str, password: Secret | None) -> tuple[str | None, str | None]:
    """(username, password) for redis-py; (None, None) means no AUTH at all."""
    if password is None:
        return (None, None) if username == DEFAULT_USER else (username, _NOPASS_PROBE)
    return username, password.reveal()


async def fresh_login(
    address: NodeAddress, account: str, password: Secret | None, *, acl: bool, timeout: float
) -> None:
    """Log in on a new connection as ``account`` with ``password`` (None: no password);
    ``VerificationFailed`` if the server refuses it. Before Redis 6 (``acl`` false) there is
    only the server password."""
    endpoint = address.endpoint
    if acl:
        login = auth_args(account, password)
    else:
        login = (None, password.reveal() if password is not None else None)
    connection_class = SSLConnection if address.tls else Connection
    connection = connection_class(
        host=address.host,
        port=address.port,
        username=login[0],
        password=login[1],
        protocol=2,
        driver_info=None,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        async with engine_call(endpoint, "verify login", timeout=timeout, classify=classify):
            try:
                await connection.connect()  # type: ignore[no-untyped-call]
                if login[1] is None:
                    await connection.send_command("PING")
                    await connection.read_response()
            except AuthenticationError:
                raise VerificationFailed(
                    f"login to {endpoint} with the new credential failed"
                ) from None
    finally:
        with contextlib.suppress(Exception):
            await connection.disconnect()
