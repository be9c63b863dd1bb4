"""The passwords and instance ids tests make, and the check that none leaked.

Every password a test sets through keyturn comes from ``new_password``, which records it in
``USED_PASSWORDS``: the session's secret scan (``tests/conftest.py``) then proves that none
of them is in any keyturn server's log or data dir, and ``leaked`` lets a test check one
server at once.
"""

from __future__ import annotations

import secrets

from tests.support.keyturn_server import KeyturnServer

#: Plaintext passwords used by the tests; checked against logs and data dirs at the end.
USED_PASSWORDS: list[str] = []


def new_password() -> str:
    """A fresh password every product accepts, recorded for the secret scan."""
    password = "Kt-" + secrets.token_urlsafe(12) + "9a"
    USED_PASSWORDS.append(password)
    return password


def new_instance_id() -> str:
    return "crs-" + secrets.token_hex(4)


def leaked(server: KeyturnServer, passwords: list[str]) -> list[str]:
    """The ``passwords`` found in ``server``'s log or data dir."""
    haystacks = [server.log().encode(), server.data_bytes()]
    return [p for p in passwords if any(p.encode() in h for h in haystacks)]
