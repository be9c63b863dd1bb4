"""MySQL/MariaDB overlap rotations: two passwords on one account for a grace period.

MariaDB (10.4 and later) holds them as an authentication chain: ``ALTER USER u@h IDENTIFIED VIA
mysql_native_password USING '<current hash>' OR mysql_native_password USING '<new hash>'``.
The current alternatives are read from ``mysql.global_priv`` and put back as they are; the new
password is sent as its client-computed hash (never in clear, so neither the general log nor
the binary log holds it), every string escaped by the driver as a query argument, with the
row's explicit host. A chain already holding ``MAX_ALTERNATIVES`` credentials is refused (the
previous overlap was never ended); a repeated ``ADD`` (a task resumed after a crash) finds its
hash there and changes nothing. Ending the overlap is a plain single-hash ``ALTER USER``.

MySQL 8.0.14 and later (told apart by ``VERSION()``) have dual passwords instead:
``IDENTIFIED BY '<new>' RETAIN CURRENT PASSWORD`` (the plaintext goes to the server, which
writes only the hash to its logs; the account must already use ``mysql_native_password``) and
``DISCARD OLD PASSWORD``. MySQL 8 is not covered by the test servers (MariaDB 10.11 only).

``check_held`` is an overlap's admin-side proof on top of the fresh login: after ``ADD`` every
credential the snapshot held is still there beside the new hash (so the old password still
logs in); after ``KEEP_ONLY`` the row holds exactly the kept password's hash. Imports:
``keyturn.core`` and ``keyturn.engines``.
"""

from __future__ import annotations

from typing import Final

from keyturn.core.engine_ports import CredentialSnapshot
from keyturn.core.errors import EngineRejected, UnsupportedFeature, VerificationFailed
from keyturn.core.model import Node
from keyturn.core.plans import Change, ChangeMode
from keyturn.core.secrets import Secret
from keyturn.engines.mysql_accounts import (
    NATIVE_PLUGIN,
    Row,
    native_hash,
    snapshot_data,
    version_at_least,
)

#: How many credentials a chain may hold before an ``ADD``: the current one, and one left
#: over by an overlap whose end failed. More means overlaps are piling up.
MAX_ALTERNATIVES: Final = 2
MARIADB_CHAINS: Final = (10, 4)
MYSQL_DUAL: Final = (8, 0, 14)
RETAIN: Final = "ALTER USER %s@%s IDENTIFIED BY %s RETAIN CURRENT PASSWORD"
DISCARD_OLD: Final = "ALTER USER %s@%s DISCARD OLD PASSWORD"


def dual_passwords(mariadb: bool, version: str) -> bool:
    """Whether a MySQL server has ``RETAIN CURRENT PASSWORD`` (MariaDB has chains instead)."""
    return not mariadb and version_at_least(version, MYSQL_DUAL)


#: What ``ALTER USER`` an addition runs: the alternatives' strings (as query arguments after
#: user and host), and the statement when it is not the plain ``IDENTIFIED VIA|WITH`` one.
Alteration = tuple[tuple[tuple[str, str], ...], str | None]


def addition(
    node: Node, *, mariadb: bool, version: str, row: Row, password: Secret
) -> Alteration | None:
    """How to put ``password`` beside the row's current credential(s); None when it already
    is there (a repeat)."""
    endpoint = node.address.endpoint
    new = (NATIVE_PLUGIN, native_hash(password))
    if mariadb:
        if not version_at_least(version, MARIADB_CHAINS):
            raise UnsupportedFeature(f"{endpoint}: MariaDB before 10.4 has no chains")
        current = list(dict.fromkeys(row.credentials))
        if new in current:
            return None
        if len(current) >= MAX_ALTERNATIVES:
            raise EngineRejected(
                f"the account on {endpoint} already holds {len(current)} credentials:"
                " end the previous overlap first"
            )
        return (*current, new), None
    if not dual_passwords(mariadb, version):
        raise UnsupportedFeature(f"{endpoint}: MySQL before 8.0.14 has no dual passwords")
    if row.plugin != NATIVE_PLUGIN:
        raise UnsupportedFeature(
            f"the account on {endpoint} uses another plugin: a retained password needs the same"
        )
    if row.auth == new[1]:
        return None
    return (("", password.reveal()),), RETAIN


def check_held(
    node: Node, mariadb: bool, row: Row, change: Change, snapshot: CredentialSnapshot | None
) -> None:
    """The admin-side proof of an overlap change (see the module's docstring)."""
    endpoint = node.address.endpoint
    if change.password is None:
        raise VerificationFailed(f"{endpoint}: an overlap needs a password")
    new = (NATIVE_PLUGIN, native_hash(change.password))
    held = set(row.credentials)
    if change.mode is ChangeMode.KEEP_ONLY:
        if row.credentials != (new,):
            raise VerificationFailed(f"{endpoint} does not hold exactly the kept password")
        return
    if not mariadb:
        return  # MySQL shows no retained password in its grant tables: the login is the proof
    before = set(snapshot_data(snapshot)) if snapshot is not None else set()
    if new not in held or not before <= held:
        raise VerificationFailed(f"{endpoint} does not hold both the new and the previous password")
