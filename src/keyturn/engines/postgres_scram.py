"""SCRAM-SHA-256 verifiers for PostgreSQL roles, computed off the event loop.

A new password reaches PostgreSQL only as its verifier (RFC 5802 and 7677, as PostgreSQL stores
it: ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``). Its cost is the PBKDF2 of
the password: libpq's ``PQencryptPasswordConn`` runs it on the calling thread, that is the event
loop, and its own HMAC loop takes about twice as long as OpenSSL's ``PKCS5_PBKDF2_HMAC``
(measured: 3.2 against 1.6 ms for 4096 iterations on the bench machine). So an ASCII password,
which SASLprep leaves unchanged (PostgreSQL's ``pg_saslprep`` returns pure ASCII as it is), is
hashed here with ``hashlib.pbkdf2_hmac`` in a worker thread (it releases the GIL), with a
16-byte random salt and the iteration count the server reports (``scram_iterations``,
PostgreSQL 16+; 4096 before), as libpq does. A password with any other character needs
SASLprep, which the standard library does not have: libpq computes that one.

The keys a verifier is made of also serve the verification that follows the change. A fresh
login with the password makes libpq run the PBKDF2 again (3.2 ms of the 7.5 ms a login took on
the bench machine); libpq 18's ``scram_client_key`` and ``scram_server_key`` options log in with
the ClientKey and ServerKey themselves (3.3 ms). Such a login is the same SCRAM exchange, and no
weaker a proof: the server accepts the ClientKey only if its stored verifier is the one made
from the new password with this salt, and the client checks the server's signature with the
ServerKey. So ``ScramKeys`` keeps the keys of the latest verifier made for each instance's
account, for a short while and in memory only, beside the password they were made from; a
verification of that very password uses them (``postgres.PostgresEngine._login``) and falls back
to the password when they are refused.

A verifier can also be made ahead of its change: ``PreparedVerifiers`` starts the PBKDF2 in a
worker thread as soon as a reset is accepted (``PostgresEngine.prepare``), so it runs while the
task is queued, the node probed and snapshotted and the task written ahead, and the change finds
it made instead of waiting for it (about a tenth of a verified reset). It is kept for a short
while, in memory only, and used only for that very password on that account of that instance
with the iteration count the server reports then. Both are kept in ``expiring.Expiring``
maps. Imports: ``keyturn.core``, this package's ``expiring`` and psycopg.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any, Final

from psycopg import pq

from keyturn.core.secrets import Secret
from keyturn.engines.expiring import Expiring

#: libpq's defaults: ``SCRAM_SHA_256_DEFAULT_ITERATIONS`` and ``SCRAM_DEFAULT_SALT_LEN``.
DEFAULT_ITERATIONS: Final = 4096
SALT_BYTES: Final = 16
#: A server-reported count outside this range is not trusted; libpq's default is used.
_MOST_ITERATIONS: Final = 10_000_000
#: At most this many accounts' keys are kept (the oldest go first).
_MOST_KEPT: Final = 4096
#: A verifier made ahead waits this many seconds for its change, at most.
PREPARED_TTL: Final = 30.0
#: The first libpq with ``scram_client_key`` and ``scram_server_key`` (PostgreSQL 18's).
KEYED_LOGIN_LIBPQ: Final = 180000


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True, slots=True)
class Keys:
    """A verifier's ClientKey and ServerKey, base64 as libpq takes them. They log in as the
    role, so they are kept like the password: never shown."""

    client: str = field(repr=False)
    server: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Verifier:
    """A SCRAM-SHA-256 verifier as PostgreSQL stores it, and its keys when made here."""

    text: str = field(repr=False)
    keys: Keys | None = field(default=None, repr=False)


def verifier_of(password: bytes, salt: bytes, iterations: int) -> Verifier:
    """The verifier of an already-normalised ``password`` with ``salt`` (pure, no I/O)."""
    salted = hashlib.pbkdf2_hmac("sha256", password, salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    text = f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"
    return Verifier(text, Keys(_b64(client_key), _b64(server_key)))


def iterations_of(conn: Any) -> int:
    """The server's ``scram_iterations`` (a reported setting since PostgreSQL 16), else 4096."""
    reported = conn.pgconn.parameter_status(b"scram_iterations")
    try:
        count = int(reported) if reported else DEFAULT_ITERATIONS
    except ValueError:
        return DEFAULT_ITERATIONS
    return count if 1 <= count <= _MOST_ITERATIONS else DEFAULT_ITERATIONS


async def scram_verifier(conn: Any, account: str, password: Secret) -> Verifier:
    """The SCRAM-SHA-256 verifier of ``password`` for the server behind ``conn``, without a
    round trip; the PBKDF2 of an ASCII password runs in a worker thread (its keys come with
    it), any other's in libpq (no keys)."""
    plain = password.reveal()
    if plain.isascii():
        salt = secrets.token_bytes(SALT_BYTES)
        return await asyncio.to_thread(verifier_of, plain.encode(), salt, iterations_of(conn))
    # SASLprep (RFC 4013) applies: libpq has it, on the calling thread.
    raw = conn.pgconn.encrypt_password(plain.encode(), account.encode(), b"scram-sha-256")
    return Verifier(str(raw.decode("ascii")))


@dataclass(frozen=True, slots=True)
class _Kept:
    password: Secret = field(repr=False)
    keys: Keys = field(repr=False)


class ScramKeys:
    """The keys of the latest verifier made for each (instance, account), for ``ttl`` seconds:
    long enough for the change's checks on every node (a standby's wait included). With a
    libpq older than ``KEYED_LOGIN_LIBPQ`` (psycopg built against the system's) nothing is
    kept, and every check logs in with the password."""

    def __init__(self, ttl: float, *, libpq: int | None = None) -> None:
        self._kept: Expiring[tuple[str, str], _Kept] = Expiring(ttl, _MOST_KEPT)
        self._usable = (pq.version() if libpq is None else libpq) >= KEYED_LOGIN_LIBPQ

    def __repr__(self) -> str:
        return f"ScramKeys({len(self._kept)} kept)"

    def remember(self, instance_id: str, account: str, password: Secret, made: Verifier) -> None:
        """Keep ``made``'s keys for ``password``; a verifier without keys forgets older ones."""
        key = (instance_id, account)
        if made.keys is None or not self._usable:
            self._kept.discard(key)
        else:
            self._kept.put(key, _Kept(password, made.keys))

    def keys_for(self, instance_id: str, account: str, password: Secret) -> Keys | None:
        """The kept keys of ``password`` for that account, if these are the latest made."""
        kept = self._kept.get((instance_id, account))
        # ``Secret`` equality compares in constant time.
        return kept.keys if kept is not None and kept.password == password else None


@dataclass(frozen=True, slots=True)
class _Prepared:
    password: Secret = field(repr=False)
    iterations: int
    made: asyncio.Future[Verifier] = field(repr=False)


def _retrieved(made: asyncio.Future[Verifier]) -> None:
    # A verifier nobody took is dropped; its (unlikely) exception must not be logged as lost.
    if not made.cancelled():
        made.exception()


class PreparedVerifiers:
    """Verifiers of ASCII passwords started ahead of their change, one per (instance, account),
    for ``ttl`` seconds; a newer one replaces an older one. What ``take`` does not find made
    (another password, another iteration count, too late) the change computes itself."""

    def __init__(self, ttl: float = PREPARED_TTL) -> None:
        self._pending: Expiring[tuple[str, str], _Prepared] = Expiring(ttl, _MOST_KEPT)

    def __repr__(self) -> str:
        return f"PreparedVerifiers({len(self._pending)} pending)"

    def start(self, instance_id: str, account: str, password: Secret, iterations: int) -> None:
        """Begin ``password``'s verifier with ``iterations`` in a worker thread; never blocks,
        never raises."""
        plain = password.reveal()
        if not plain.isascii():
            return  # SASLprep: libpq computes it, at the change
        salt = secrets.token_bytes(SALT_BYTES)
        loop = asyncio.get_running_loop()
        try:
            made = loop.run_in_executor(None, verifier_of, plain.encode(), salt, iterations)
        except RuntimeError:
            return  # the loop's executor is shut down: the change computes its own
        made.add_done_callback(_retrieved)
        self._pending.put((instance_id, account), _Prepared(password, iterations, made))

    async def take(
        self, instance_id: str, account: str, password: Secret, iterations: int
    ) -> Verifier | None:
        """The verifier started for ``password`` on that account, awaited; None when there is
        none that fits. Taken once: a second change of the same password makes its own salt."""
        found = self._pending.take((instance_id, account))
        if found is None or found.iterations != iterations:
            return None
        if found.password != password:
            return None
        try:
            return await found.made
        except Exception:
            return None  # (never seen) the change computes its own
