"""Ports: the narrow interfaces the service layer needs from engines, stores and crypto.

The service receives implementations of these protocols from the composition root
(``keyturn.bootstrap``); it never imports an adapter. Requests and answers are frozen dataclasses
so fields can be added without breaking implementations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from keyturn.core.access import KeyPolicies, NamedPolicy
from keyturn.core.audit import AuditEvent
from keyturn.core.cluster import Claimed, Fence, HeldTask, NodeRecord
from keyturn.core.model import AccessKey, EngineKind, Instance, KeySource, Node, Tenant
from keyturn.core.plans import Change, ChangePlan, Topology
from keyturn.core.secrets import Secret
from keyturn.core.tasks import NewTask, Task, TaskState, TaskStep

# --------------------------------------------------------------------------- engines


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


# --------------------------------------------------------------------------- crypto


class SecretBox(Protocol):
    """Authenticated encryption of secrets at rest. ``context`` binds a sealed value to its
    place (row and column), so a value copied elsewhere does not open."""

    def seal(self, plaintext: str, *, context: str) -> str: ...

    def unseal(self, token: str, *, context: str) -> str: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicKeyInfo:
    """A tenant's RSA public key: base64 DER (SubjectPublicKeyInfo) and PEM."""

    der_base64: str
    pem: str


class PasswordCipher(Protocol):
    """Per-tenant RSA-2048 key pairs: clients encrypt passwords with the public key
    (PKCS#1 v1.5, or OAEP), keyturn decrypts them. Private keys are sealed at rest."""

    async def public_key(self, tenant_id: str) -> PublicKeyInfo:
        """The tenant's public key, creating the pair on first use."""
        ...

    async def decrypt(self, tenant_id: str, ciphertext_base64: str) -> Secret:
        """``InvalidParameterValue`` when the text does not decrypt with the tenant's key."""
        ...

    async def rotate(self, tenant_id: str) -> PublicKeyInfo:
        """Replace the tenant's key pair; ciphertexts made for the old key stop working."""
        ...


class AuditLog(Protocol):
    """The append-only audit log. ``append`` must raise if the event could not be stored
    durably: a change whose record cannot be written is not made (fail-closed)."""

    async def append(self, event: AuditEvent) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime: ...


# --------------------------------------------------------------------------- store


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    limit: int
    offset: int = 0


class TenantRepo(Protocol):
    async def put_tenant(self, tenant: Tenant, source: KeySource) -> None: ...

    async def list_tenants(self) -> list[Tenant]: ...

    async def tenant_sources(self) -> dict[str, KeySource]: ...

    async def remove_tenant(self, tenant_id: str) -> None: ...


class KeyRepo(Protocol):
    async def get_access_key(self, key_id: str) -> AccessKey | None:
        """The key with its policies resolved (``AccessKey.policies``: inline and named
        documents as JSON text, named ones labelled with their names; None when the key has
        none attached, i.e. it is its tenant's administrator)."""
        ...

    async def put_access_key(self, key: AccessKey) -> None: ...

    async def list_access_keys(self, tenant_id: str | None = None) -> list[AccessKey]: ...

    async def set_access_key_enabled(self, key_id: str, enabled: bool) -> bool: ...

    async def remove_access_key(self, key_id: str) -> None: ...


class InstanceRepo(Protocol):
    async def get_instance(self, tenant_id: str, instance_id: str) -> Instance:
        """Raise ``InstanceNotFound`` if absent or of another tenant."""
        ...

    async def list_instances(
        self,
        tenant_id: str | None,
        *,
        product: str | None = None,
        instance_ids: Sequence[str] | None = None,
        page: Page | None = None,
        source: KeySource | None = None,
    ) -> tuple[list[Instance], int]: ...

    async def instance_regions(
        self, tenant_id: str, *, product: str | None = None
    ) -> list[tuple[str, str]]:
        """``(id, region)`` of every instance of the tenant (of ``product``), in id order:
        what per-item authorization of a listing needs, without reading nodes or secrets."""
        ...

    async def instance_labels(
        self, tenant_id: str, *, product: str | None = None
    ) -> list[tuple[str, str, tuple[tuple[str, str], ...]]]:
        """``(id, region, labels)`` of every instance of the tenant (of ``product``), in id
        order: what a fleet job's selection reads."""
        ...

    async def put_instance(self, instance: Instance) -> None:
        """Insert or replace an instance with its nodes."""
        ...

    async def remove_instance(self, instance_id: str) -> bool: ...

    async def record_observation(
        self, instance_id: str, *, no_auth: bool | None, engine_version: str | None
    ) -> None: ...


class TaskRepo(Protocol):
    async def create_task(
        self, new: NewTask, pending: Secret | None, *, owner: str | None = None, lease: float = 0
    ) -> Task:
        """Queue a task; ``OperationInProgress`` if its account already has an active task.
        With ``owner``, the task is created claimed by that node for ``lease`` seconds (fence
        1), so no other node takes it before its submitter runs it."""
        ...

    async def get_task(self, tenant_id: str, task_id: int) -> Task: ...

    async def list_tasks(
        self,
        tenant_id: str,
        *,
        instance_id: str | None,
        page: Page,
        instance_ids: Sequence[str] | None = None,
    ) -> tuple[list[Task], int]:
        """A page of the tenant's tasks, newest first (of one instance, or of those listed)."""
        ...

    async def unfinished_tasks(self) -> list[Task]: ...

    async def active_task(self, instance_id: str, account: str) -> int | None:
        """The id of the account's preparing or running task, if any."""
        ...

    async def pending_password(self, task_id: int) -> Secret | None: ...

    async def write_ahead(
        self,
        task_id: int,
        *,
        snapshots: Mapping[str, CredentialSnapshot],
        admin_pending: Mapping[int, Secret],
        steps: Sequence[TaskStep],
        fence: Fence | None = None,
    ) -> Task:
        """Record, in one transaction, what the task is about to do: previous credentials
        (sealed) per node endpoint, keyturn's own new admin credentials (sealed, pending, per
        declared node ordinal) and the ``running`` state. Nothing touches an engine before
        this commits."""
        ...

    async def record_snapshots(
        self,
        task_id: int,
        snapshots: Mapping[str, CredentialSnapshot],
        fence: Fence | None = None,
    ) -> None:
        """Replace a running task's snapshots (a failover moved the instance: the plan is
        rebuilt, with snapshots of the nodes it did not know before)."""
        ...

    async def snapshots(self, task_id: int) -> dict[str, CredentialSnapshot]: ...

    async def update_steps(
        self, task_id: int, steps: Sequence[TaskStep], fence: Fence | None = None
    ) -> None: ...

    async def finish_task(
        self,
        task_id: int,
        *,
        state: TaskState,
        message: str,
        steps: Sequence[TaskStep],
        promote_admin: bool,
        no_auth: bool | None,
        verified_at: datetime | None = None,
        error_code: str | None = None,
        fence: Fence | None = None,
        session_marks: Mapping[str, str] | None = None,
    ) -> Task:
        """End a task in one transaction: wipe its pending password and snapshots, promote
        (or discard) pending admin credentials and record the instance's new auth mode.

        Every write of a running task takes the ``fence`` its worker claimed it with: when the
        row no longer carries it (another node claimed the task since), nothing is written
        and ``LeaseLost`` is raised. Without a fence (tools, tests) the write is unfenced.
        ``session_marks`` (node endpoint -> ``SessionMark.text()``) are kept with the task."""
        ...


class ClusterRepo(Protocol):
    """Node heartbeats and task leases (``keyturn.core.cluster``). Times are the store's
    clock; every claim is atomic across processes."""

    async def heartbeat(self, node: NodeRecord) -> None:
        """Insert or refresh the node's row (``heartbeat_at`` = now)."""
        ...

    async def remove_node(self, node_id: str) -> None: ...

    async def list_nodes(self) -> list[NodeRecord]: ...

    async def held_tasks(self) -> list[HeldTask]:
        """Every unfinished task with its lease, oldest first."""
        ...

    async def claim_task(self, task_id: int, owner: str, lease: float) -> Claimed | None:
        """Claim one unfinished task for ``lease`` seconds if nobody holds it (no owner, a
        lapsed lease, or ``owner`` itself): the fence is incremented. None: held by another
        node, finished or absent."""
        ...

    async def claim_lapsed(
        self,
        owner: str,
        lease: float,
        *,
        limit: int,
        skip: Sequence[int] = (),
        own: bool = False,
    ) -> list[Claimed]:
        """Claim up to ``limit`` unfinished tasks whose lease lapsed (or that nobody holds;
        with ``own``, also those ``owner`` held before: its start), oldest first, except
        ``skip``. Two nodes never claim the same task with the same fence."""
        ...

    async def renew_leases(self, owner: str, fences: Mapping[int, int], lease: float) -> set[int]:
        """Extend the leases ``owner`` holds on these tasks (task id -> the fence it claimed
        them with) by ``lease`` seconds from now; the ids renewed. A task missing from the
        answer was claimed by another node since (or is gone)."""
        ...

    async def release_leases(self, owner: str, task_ids: Sequence[int]) -> None:
        """Let other nodes claim these tasks at once (a node parking them on shutdown)."""
        ...


class ReplayRepo(Protocol):
    """The replay memory shared by every process on the store: nonces (or signatures) of
    verified requests, each kept until it expires."""

    async def remember_nonce(
        self, scope: str, nonce: str, *, expires_at: datetime, now: datetime
    ) -> bool:
        """Record ``nonce`` for ``scope`` (an access key id) until ``expires_at``; False (and
        nothing written) when it is already recorded and not expired at ``now``. Atomic across
        processes: of two concurrent calls with the same nonce exactly one gets True."""
        ...

    async def forget_nonce(self, scope: str, nonce: str) -> None:
        """Delete one remembered nonce (its call did not run after all)."""
        ...

    async def purge_nonces(self, now: datetime) -> int:
        """Delete expired nonces; how many."""
        ...


class RateRepo(Protocol):
    """Rate-limit windows shared by every process on the store: calls accepted per (tenant,
    action) in one wall-clock second."""

    async def count_call(self, tenant_id: str, action: str, second: int, limit: int) -> bool:
        """Count one call of ``action`` in the window ``second`` unless the window already
        holds ``limit`` calls; whether it was counted. Atomic across processes: of concurrent
        calls, at most ``limit`` in all are counted in one window."""
        ...

    async def purge_rate_windows(self, before: int) -> int:
        """Delete the windows of seconds before ``before``; how many."""
        ...


class ChangeLockRepo(Protocol):
    """Consecutive wrong old passwords per account and the lock they lead to, shared by every
    process on the store and kept across restarts. ``key`` names the account."""

    async def count_attempt(self, key: str, *, max_failures: int, now: datetime) -> bool:
        """Count one attempt before it is evaluated, unless changes are locked at ``now`` or
        ``max_failures`` attempts are already counted (then nothing is written); whether it
        was counted. An expired lock is lifted, and the count starts over."""
        ...

    async def missed_attempt(
        self, key: str, *, max_failures: int, now: datetime, lock_until: datetime
    ) -> int:
        """A counted attempt was a wrong old password: lock changes until ``lock_until`` once
        ``max_failures`` are counted; the attempts left (0: locked, by this call or another)."""
        ...

    async def refund_attempt(self, key: str) -> None:
        """A counted attempt was not a wrong password: it no longer counts."""
        ...

    async def clear_attempts(self, key: str, *, now: datetime) -> None:
        """The old password was right: the count starts over (a lock in force stays)."""
        ...

    async def locked_until(self, key: str, *, now: datetime) -> datetime | None:
        """When the lock on ``key`` ends, or None when changes are not locked at ``now``."""
        ...


class PolicyRepo(Protocol):
    """Named policies of tenants and what each access key attaches (``keyturn.core.access``)."""

    async def put_policy(self, policy: NamedPolicy) -> None:
        """Insert or replace; ``NotFound`` if the tenant does not exist."""
        ...

    async def get_policy(self, tenant_id: str, name: str) -> NamedPolicy:
        """``NotFound`` if the tenant has no policy of that name."""
        ...

    async def list_policies(
        self, tenant_id: str | None = None, *, source: KeySource | None = None
    ) -> list[NamedPolicy]: ...

    async def remove_policy(self, tenant_id: str, name: str) -> bool:
        """Whether it existed; ``Conflict`` naming the keys while any key attaches it."""
        ...

    async def key_policies(self, key_id: str) -> KeyPolicies | None:
        """What the key attaches, unresolved; None: administrator. ``NotFound`` if no key."""
        ...

    async def set_key_policies(self, key_id: str, policies: KeyPolicies | None) -> None:
        """Attach (None: make the key its tenant's administrator); ``NotFound`` if the key or
        a named policy of the key's tenant does not exist."""
        ...


class Store(
    TenantRepo,
    KeyRepo,
    PolicyRepo,
    InstanceRepo,
    TaskRepo,
    ReplayRepo,
    RateRepo,
    ChangeLockRepo,
    ClusterRepo,
    Protocol,
):
    """Everything the service needs from persistent state."""

    async def close(self) -> None: ...

    def writes_together(self) -> AbstractAsyncContextManager[None]:
        """A unit of work: the calling task's writes inside it are durable together once it is
        left (one commit where the store can group them), else the error that lost them.
        Tasks started inside wait for their own writes as usual."""
        ...
