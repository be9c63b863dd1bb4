"""Redis replies and rules as plain data: parsing ``ACL GETUSER``, ``INFO`` and ``CONFIG GET``
replies, building the ``ACL SETUSER`` rules of a restore, and reducing redis-py exceptions and
error replies to secret-free domain errors and reasons.

Nothing here does I/O; ``keyturn.engines.redis`` drives the connections. Error replies can echo
a command's arguments (a failed ``ACL SETUSER`` modifier, with its password), so only an error's
code word or a fixed phrase chosen by matching known server texts ever leaves this module. It
imports only ``keyturn.core``, ``keyturn.engines.base`` and redis-py.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ConnectionError,
    RedisError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from keyturn.core.errors import EngineError, EngineRejected, EngineUnavailable, InternalError
from keyturn.core.secrets import Secret
from keyturn.engines.base import reply_code

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def classify(exc: Exception, endpoint: str, action: str) -> EngineError | None:
    """redis-py exception -> domain error; never copies the exception's text."""
    if isinstance(exc, AuthenticationError):
        return EngineUnavailable(f"admin login to {endpoint} failed")
    if isinstance(exc, BusyLoadingError):
        return EngineUnavailable(f"{endpoint} is loading its dataset")
    if isinstance(exc, RedisTimeoutError):
        return EngineUnavailable(f"{action} on {endpoint} timed out")
    if isinstance(exc, ConnectionError):
        return EngineUnavailable(f"{endpoint} is not reachable")
    if isinstance(exc, ResponseError):
        code = exc.status_code if exc.status_code else reply_code(str(exc))
        return EngineRejected(f"{endpoint} refused {action}: {reply_code(code)}")
    if isinstance(exc, RedisError):
        return EngineRejected(f"{action} on {endpoint} failed ({type(exc).__name__})")
    return None


def text(value: object) -> str:
    """A reply element as text (bytes decoded as UTF-8, never failing)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def pairs(reply: object) -> dict[str, Any]:
    """A flat ``[key, value, key, value...]`` reply (or an already parsed dict) as a dict."""
    if isinstance(reply, Mapping):
        return {text(k): v for k, v in reply.items()}
    if isinstance(reply, Sequence) and not isinstance(reply, (bytes, str)):
        return {text(reply[i]): reply[i + 1] for i in range(0, len(reply) - 1, 2)}
    return {}


def parse_version(version: str) -> tuple[int, ...]:
    """``"7.0.15"`` -> ``(7, 0, 15)``; an empty tuple if there is no number."""
    parts = re.findall(r"\d+", version)
    return tuple(int(p) for p in parts[:3])


def sha256_hex(password: Secret) -> str:
    """The hash ``ACL GETUSER`` lists for ``password``."""
    return hashlib.sha256(password.reveal().encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AclUser:
    """An ``ACL GETUSER`` reply: flags, password hashes and command rules."""

    flags: frozenset[str]
    passwords: tuple[str, ...]
    commands: str

    @property
    def nopass(self) -> bool:
        return "nopass" in self.flags

    @property
    def enabled(self) -> bool:
        return "on" in self.flags

    @property
    def all_commands(self) -> bool:
        """Whether the rules allow every command (``+@all`` / ``allcommands``, nothing taken
        away after it); Redis lists such a user's commands as ``+@all`` first."""
        rules = self.commands.split()
        return (
            bool(rules)
            and rules[0] in ("+@all", "allcommands")
            and not any(rule.startswith("-") for rule in rules[1:])
        )

    @classmethod
    def parse(cls, reply: object) -> AclUser:
        fields = pairs(reply)
        flags = fields.get("flags") or []
        passwords = fields.get("passwords") or []
        return cls(
            flags=frozenset(text(f) for f in flags),
            passwords=tuple(text(p) for p in passwords),
            commands=text(fields.get("commands") or ""),
        )

    def privilege(self) -> str:
        """``rw``, ``r``, ``w`` or ``none`` from the command rules (last rule wins)."""
        read = write = False
        for rule in self.commands.split():
            if rule in ("+@all", "allcommands"):
                read = write = True
            elif rule in ("-@all", "nocommands"):
                read = write = False
            elif rule in ("+@read", "-@read"):
                read = rule[0] == "+"
            elif rule in ("+@write", "-@write"):
                write = rule[0] == "+"
        return ("r" if read else "") + ("w" if write else "") or "none"


def persist_failure(command: str, exc: ResponseError) -> str:
    """A fixed, secret-free reason for a failed save."""
    reply = str(exc)
    if "without a config file" in reply:
        return "the server runs without a config file"
    if "Rewriting config file" in reply:
        return "the server could not rewrite its config file"
    if "ACL file" in reply or "save the ACLs" in reply:
        return "the server could not save its ACL file"
    code = exc.status_code if exc.status_code else reply_code(reply)
    return f"{command} refused ({reply_code(code)})"


def restore_rules(data: Mapping[str, Any]) -> list[str]:
    """``ACL SETUSER`` rules that bring back a snapshot taken by ``RedisEngine.snapshot``."""
    hashes = data.get("passwords")
    nopass = data.get("nopass")
    enabled = data.get("enabled")
    if (
        not isinstance(hashes, (list, tuple))
        or not all(isinstance(h, str) and _SHA256_HEX.fullmatch(h) for h in hashes)
        or not isinstance(nopass, bool)
        or not isinstance(enabled, bool)
    ):
        raise InternalError("the credential snapshot is not one of Redis ACL")
    rules = ["resetpass", *(f"#{h}" for h in hashes)]
    if nopass:
        rules.append("nopass")
    rules.append("on" if enabled else "off")
    return rules


#: Commands whose use hands over the server: change users (``ACL SETUSER``), the configuration
#: (``CONFIG SET``: ``requirepass``, ``dir`` + ``dbfilename``...) or load code (``MODULE LOAD``).
#: A user allowed any of them is a superuser (asked with ``ACL DRYRUN``, Redis 7+).
TAKEOVER_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("ACL", "SETUSER", "x"),
    ("CONFIG", "SET", "x", "y"),
    ("MODULE", "LOAD", "x"),
)


def dryrun_allowed(reply: object) -> bool:
    """Whether an ``ACL DRYRUN`` reply allows the command: ``OK``; a denial is a sentence, an
    unknown user an error reply."""
    return not isinstance(reply, Exception) and text(reply) == "OK"


#: What a client needs beside its data commands: the harmless connection commands. AUTH and
#: HELLO are never subject to ACL rules. ``-@admin -@dangerous`` takes away CLIENT KILL, PAUSE,
#: LIST, NO-EVICT, UNBLOCK, UNPAUSE (Redis 7 categorizes subcommands); Redis 6 categorizes only
#: the whole CLIENT command, so the harmless CLIENT subcommands are added back by name.
_CONNECTION = ["+@connection", "+@transaction"]
_NOT_ADMINISTRATION = ["-@admin", "-@dangerous", "+client|setname", "+client|getname", "+client|id"]
#: Read-only: read commands (``-@dangerous`` drops KEYS and SORT_RO: SCAN is the way) and the
#: connection commands. Read-write (Alibaba's RoleReadWrite, a data account): every command but
#: administration and the dangerous ones (CONFIG, ACL, DEBUG, MONITOR, CLIENT KILL/PAUSE/LIST,
#: INFO, FLUSHALL, FLUSHDB, KEYS, SORT, SWAPDB, RESTORE, MIGRATE, SHUTDOWN...).
READ_ONLY_RULES = ["-@all", "+@read", *_CONNECTION, *_NOT_ADMINISTRATION]
READ_WRITE_RULES = ["+@all", *_NOT_ADMINISTRATION]


def account_rules(password: Secret, *, read_only: bool, channels: bool) -> list[str]:
    """``ACL SETUSER`` rules of a new account: enabled, one password, every key (and channel
    where the server knows channel rules, Redis 6.2+), and the commands of its role."""
    rules = ["on", f">{password.reveal()}", "~*"]
    if channels:
        rules.append("&*")
    rules += READ_ONLY_RULES if read_only else READ_WRITE_RULES
    return rules
