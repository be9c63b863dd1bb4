"""Fresh Redis logins: the proof step of every verification, on a bare connection of its own.

A verification must not ride on keyturn's pooled admin connection: it opens a new connection,
sends ``AUTH`` as the account (or nothing, for password-free) and, without a password, a
``PING`` that must pass. A bare ``Connection`` is used rather than a client, because building a
``Redis`` client with its pool costs more CPU than the login itself. ``tls_options`` turns a
``rediss://`` node URL's query (redis-py's own names: ``ssl_ca_certs``, ``ssl_ca_path``,
``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs``, ``ssl_check_hostname``) into the TLS
arguments that this login and the pooled admin clients share. It imports only ``keyturn.core``,
``keyturn.engines`` and redis-py.
"""

from __future__ import annotations

import contextlib
from typing import Any, Final

from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError

from keyturn.core.errors import EngineRejected, VerificationFailed
from keyturn.core.model import NodeAddress
from keyturn.core.secrets import Secret
from keyturn.engines.base import engine_call
from keyturn.engines.redis_acl import classify

#: The account that needs no AUTH; the only account of Redis before 6.
DEFAULT_USER = "default"
#: AUTH password sent to check a non-default ``nopass`` user, which accepts any password.
_NOPASS_PROBE = "keyturn-nopass-probe"
#: Node URL options naming files, passed to redis-py as they are.
_TLS_FILES: Final = ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile")
_CERT_REQS: Final = frozenset({"none", "optional", "required"})
_BOOLEANS: Final = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def tls_options(address: NodeAddress) -> dict[str, Any]:
    """redis-py's TLS keyword arguments for ``address`` (none for a plain ``redis://`` node).

    Without options the server certificate is checked against the system's CAs and the host
    name; ``ssl_cert_reqs=none`` (encryption without authentication) also turns off the host
    name check, which needs a verified certificate."""
    if not address.tls:
        return {}
    options = address.options
    found: dict[str, Any] = {name: options[name] for name in _TLS_FILES if options.get(name)}
    reqs = options.get("ssl_cert_reqs", "required").strip().lower()
    if reqs not in _CERT_REQS:
        raise EngineRejected(f"the node URL for {address.endpoint} has an invalid ssl_cert_reqs")
    found["ssl_cert_reqs"] = reqs
    check = options.get("ssl_check_hostname")
    if check is None:
        found["ssl_check_hostname"] = reqs != "none"
    elif check.strip().lower() in _BOOLEANS:
        found["ssl_check_hostname"] = _BOOLEANS[check.strip().lower()]
    else:
        raise EngineRejected(
            f"the node URL for {address.endpoint} has an invalid ssl_check_hostname"
        )
    return found


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
        **tls_options(address),
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
