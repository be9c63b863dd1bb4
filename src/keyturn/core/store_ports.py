"""Store ports: the persistent state the service reads and writes, one protocol per concern.

Tenants, access keys and their policies, instances, tasks (with their write-ahead record of
snapshots and pending admin passwords), task leases and node heartbeats, the replay memory,
rate-limit windows and change locks each have a narrow protocol; ``Store`` is all of them
together, what the composition root (``keyturn.bootstrap``) hands the service
(``keyturn.store.sql.SqlStore`` implements it). Every protocol is atomic across processes where
it says so, since several keyturn nodes may share one store. Standard library and
``keyturn.core`` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from keyturn.core.access import KeyPolicies, NamedPolicy
from keyturn.core.cluster import Claimed, Fence, HeldTask, NodeRecord
from keyturn.core.engine_ports import CredentialSnapshot
from keyturn.core.model import AccessKey, Instance, KeySource, Tenant
from keyturn.core.secrets import Secret
from keyturn.core.tasks import NewTask, Task, TaskState, TaskStep


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
        left (one commit), else the error that lost them. Tasks started inside wait for their
        own writes as usual, and find what the unit wrote (it is committed before they
        write)."""
        ...

    def writes_for_starter(self) -> AbstractContextManager[None]:
        """Inside, the calling task's final writes (a task's finish) join the unit of work of
        the task that started it and are durable when that unit is left, not on return: for a
        task whose starter waits for its end inside ``writes_together`` (a synchronous call:
        the task's finish and the answer's record then share one commit). Once the starter
        left its unit, the writes are durable on return as usual."""
        ...
