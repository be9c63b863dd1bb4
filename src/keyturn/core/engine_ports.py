"""Engine ports: what the service needs from a database engine's driver, and what it answers.

An ``Engine`` is one engine kind's driver (Redis, PostgreSQL, MySQL/MariaDB): per-node
operations (probe, snapshot, change, verify, sessions) and the topology discovery and plans that
change a whole instance; ``EngineRegistry`` maps an engine kind to its driver. The answers
(``EngineInfo``, ``AccountInfo``, ``CredentialSnapshot``, ``ApplyResult``, ``Session``,
``SessionMark``) are frozen, keyword-only dataclasses, so fields can be added without breaking
implementations. The service receives the drivers from the composition root
(``keyturn.bootstrap``) and never imports an adapter. Standard library and ``keyturn.core`` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from keyturn.core.model import EngineKind, Instance, Node
from keyturn.core.plans import Change, ChangePlan, Topology
from keyturn.core.secrets import Secret


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineInfo:
    """What a probe of one node found."""

    version: str
    #: Whether the engine has named accounts (Redis ACL users, SQL roles).
    accounts: bool
    #: Whether the account keyturn was asked about needs no password (Redis ``nopass``).
    password_free: bool | None = None
    #: Whether the account keyturn was asked about exists; None when the probe cannot tell.
    account_exists: bool | None = None
    #: Whether that account has full control of the server (PostgreSQL ``rolsuper``, MySQL
    #: global ``SUPER`` or ``CREATE USER``, a Redis user allowed every command or the commands
    #: that change users and configuration); None when the probe cannot tell.
    superuser: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountInfo:
    """An account as the engine reports it."""

    name: str
    enabled: bool
    password_free: bool
    privilege: str = "rw"


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialSnapshot:
    """An account's credential as stored by the engine before a change: hashes or verifiers,
    never the plaintext where the engine allows it. Sealed at rest; used for rollback."""

    account: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyResult:
    """The outcome of a credential change on one node."""

    persisted: bool
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """One open client connection of an account on one node, as the engine reports it: who
    is still logged in (and so may still hold an old password). Never holds a credential."""

    #: The node it is open on (``host:port``).
    node: str
    #: The engine's id for it: a Redis client id, a PostgreSQL backend pid, a MySQL
    #: processlist id. What ``end_sessions`` takes.
    id: str
    account: str
    #: The client's ``host:port`` as the engine sees it ("" when unknown: a unix socket).
    client_addr: str = ""
    #: The name the client gave itself (Redis ``CLIENT SETNAME``, PostgreSQL
    #: ``application_name``, MySQL ``program_name`` connect attribute); "" when none.
    client_name: str = ""
    #: When the connection was opened (timezone-aware); None when the engine cannot tell
    #: (MariaDB/MySQL report only the time in the current command).
    connected_at: datetime | None = None
    #: Seconds since the client's last command; None when unknown.
    idle_seconds: float | None = None
    #: What it is doing ("idle", "active", the last command...).
    state: str = ""
    #: For an engine whose session ids only grow within one server run (MariaDB/MySQL
    #: connection ids): when that run started (epoch seconds), so the id can be compared with
    #: a ``SessionMark`` taken in the same run; None elsewhere.
    run_started: int | None = None

    def opened_before(self, instant: datetime) -> bool | None:
        """Whether it was opened before ``instant`` (so it logged in with the password of
        then); None when the engine could not tell when it was opened."""
        return None if self.connected_at is None else self.connected_at < instant

    def opened_before_mark(self, mark: SessionMark) -> bool | None:
        """Whether it was opened before ``mark`` was taken on its node: its connection id is
        at most the mark's; None when that cannot be told (no ids in order, or the server
        restarted since the mark: ids start again from 1)."""
        if self.run_started is None or not self.id.isdigit() or len(self.id) > 20:
            return None
        if not mark.same_run(self.run_started):
            return None
        return int(self.id) <= mark.high


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionMark:
    """A node's connection-id watermark (MariaDB/MySQL, which record no connection start):
    the highest connection id once a change was applied and verified, and when the server's run
    began. Connection ids only grow within a run, so a session of that run with an id at most
    ``high`` was opened before the change; a restart starts ids again, which ``started``
    detects. Stored with the task as ``"started:high"``."""

    #: Server start, epoch seconds (now - ``Uptime``: may differ by a second between reads).
    started: int
    high: int

    #: Two reads of one run's start differ by at most this many seconds.
    SLACK = 2

    def same_run(self, started: int) -> bool:
        return abs(self.started - started) <= self.SLACK

    def text(self) -> str:
        return f"{self.started}:{self.high}"

    @classmethod
    def parse(cls, text: str) -> SessionMark | None:
        """The mark ``text`` holds, or None when it is not one (bounded digits only)."""
        started, sep, high = text.partition(":")
        if not sep or not started.isdigit() or not high.isdigit():
            return None
        if len(started) > 20 or len(high) > 20:
            return None
        return cls(started=int(started), high=int(high))


class Engine(Protocol):
    """One engine kind's driver: per-node operations, and the plans that change an instance.

    Every per-node method takes the node to act on; implementations pool admin connections per
    node and translate driver exceptions into ``EngineError``s. A change of an account is never
    made node by node by the caller: ``discover`` finds the instance's topology as it is now
    (which node is primary, replicas, shards, watchers) and ``plan`` builds the ordered,
    undoable steps and the checks for it (``keyturn.core.plans``)."""

    kind: EngineKind

    async def probe(self, node: Node, account: str | None = None) -> EngineInfo:
        """Log in as admin, read the version (and ``account``'s password-free flag)."""
        ...

    async def list_accounts(self, node: Node) -> list[AccountInfo]: ...

    async def snapshot(self, node: Node, account: str) -> CredentialSnapshot:
        """Read the account's current credential; ``AccountNotFound`` if it does not exist."""
        ...

    async def password_matches(self, node: Node, account: str, password: Secret) -> bool:
        """Whether ``password`` is one of the account's current passwords (a password-free
        account matches none); ``AccountNotFound`` if the account does not exist."""
        ...

    async def create_account(
        self, node: Node, account: str, password: Secret, *, read_only: bool
    ) -> ApplyResult:
        """Create a login account with ``password``, read-only or read-write;
        ``AccountExists`` if it exists, ``AccountsUnsupported`` where the engine has none."""
        ...

    async def drop_account(self, node: Node, account: str) -> ApplyResult:
        """Delete an account (the rollback of ``create_account``); absent is not an error."""
        ...

    async def verify(self, node: Node, account: str, password: Secret | None) -> None:
        """Prove on a fresh connection that ``password`` (None: no password) logs in and that
        no other credential does; raise ``VerificationFailed`` otherwise."""
        ...

    async def verify_logins(self, node: Node, account: str, passwords: Sequence[Secret]) -> None:
        """Prove that each of ``passwords`` logs in as ``account`` on a fresh connection (an
        overlap's grace period: old and new both work); other credentials are not checked.
        ``VerificationFailed`` naming no password otherwise."""
        ...

    def overlap_partner(self, account: str) -> str | None:
        """For an engine with one password per account (PostgreSQL), the twin login role an
        overlap rotation alternates with (``app`` <-> ``app_clone``, as Alibaba KMS
        ``DoubleUsers`` do); None where one account holds two passwords during an overlap
        (Redis ACL users, MariaDB authentication chains, MySQL 8 dual passwords)."""
        ...

    def prepare(self, node: Node, account: str, password: Secret) -> None:
        """Begin, off the caller's path, what a coming change of ``account`` to ``password`` on
        ``node``'s instance can compute without the engine (PostgreSQL: the SCRAM verifier's
        PBKDF2), so that the change finds it made. Never blocks and never raises; a change that
        finds nothing prepared computes it then. Engines with nothing to prepare do nothing."""
        ...

    async def list_sessions(self, node: Node, account: str) -> list[Session]:
        """The account's open client connections on ``node`` (keyturn's own admin
        connections excluded), oldest first; bounded by the engine's own client limit."""
        ...

    async def session_mark(self, node: Node) -> SessionMark | None:
        """The node's connection-id watermark now (taken once a change is applied and verified, so
        later sessions can be told from earlier ones); None for an engine that records when
        each session was opened (Redis, PostgreSQL)."""
        ...

    async def end_sessions(self, node: Node, account: str, ids: Sequence[str]) -> int:
        """End those of ``ids`` (from ``list_sessions``) that are still open connections of
        ``account`` on ``node`` (Redis ``CLIENT KILL ID .. USER ..``, ``pg_terminate_backend``,
        MySQL ``KILL CONNECTION``); how many were ended. An id that is gone or belongs to
        another account is skipped, not an error."""
        ...

    async def discover(self, instance: Instance) -> Topology:
        """The instance as it is now: its data nodes with their roles (never assumed from the
        inventory's order) and its watchers. ``EngineUnavailable`` when a node needed to tell
        cannot be reached."""
        ...

    def plan(
        self,
        topology: Topology,
        change: Change,
        snapshots: Mapping[str, CredentialSnapshot],
    ) -> ChangePlan:
        """The steps and checks that make ``change`` on ``topology``; ``snapshots`` (by node
        endpoint) are what every step's undo restores."""
        ...

    async def forget(self, node: Node) -> None:
        """Drop pooled connections to ``node`` (its admin credential changed)."""
        ...

    async def close(self) -> None: ...


class EngineRegistry(Protocol):
    """Engine kind -> driver; nothing else switches on the engine kind."""

    def engine(self, kind: EngineKind) -> Engine: ...
