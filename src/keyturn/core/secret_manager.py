"""Secret-manager domain values: a managed secret, its versions, its rotation flows and schedule.

A *secret* (Tencent SSM product secret, Alibaba KMS ``Rds``/``Redis`` secret) names one account
of one instance; keyturn owns its password and rotates it. Each rotation makes a *version*
(``version_id``, the password as a ``Secret``, the login name it belongs to: with PostgreSQL
``DoubleUsers`` the two versions name two different roles). A version is staged ``ACSCurrent``
only after the task that set it verified a fresh login on every node; the one it replaced
becomes ``ACSPrevious``. A *rotation flow* is one attempt to make a new version (Tencent's
``FlowID`` / ``DescribeAsyncRequestInfo``); the finished flows are the rotation history. Pure
standard library; row mapping lives in ``keyturn.store.secrets``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Final, Protocol

from keyturn.core.errors import InvalidParameterValue
from keyturn.core.model import Product
from keyturn.core.secret_schedule import PendingWork
from keyturn.core.secrets import Secret
from keyturn.core.store_ports import Page

#: SecretName: the vendors allow letters, digits, ``_`` and ``-`` (Tencent up to 128 chars,
#: Alibaba up to 192 with ``/``); keyturn takes the intersection plus ``.``.
SECRET_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
MAX_DESCRIPTION: Final = 2048
#: Vendor bounds: Tencent RotationFrequency is 1-365 days; KMS RotationInterval is 6 hours to
#: 8760 hours. keyturn accepts one second upward so tests can use a short period.
MIN_PERIOD: Final = timedelta(seconds=1)
MAX_PERIOD: Final = timedelta(days=365)
MAX_OVERLAP: Final = timedelta(days=30)


class SecretVendor(enum.StrEnum):
    """Which vendor API family the secret is served to."""

    TENCENT_SSM = "tencent-ssm"
    ALIBABA_KMS = "alibaba-kms"


#: Which products each vendor's secret manager serves.
VENDOR_PRODUCTS: Final = {
    SecretVendor.TENCENT_SSM: frozenset(
        {Product.TENCENT_REDIS, Product.TENCENT_POSTGRES, Product.TENCENT_TDMYSQL}
    ),
    # KMS ``Redis`` secrets on kvstore instances; ``Rds`` ones on the SQL engines (keyturn
    # has no Alibaba SQL product: the tenant's PostgreSQL and MySQL/MariaDB instances).
    SecretVendor.ALIBABA_KMS: frozenset(
        {Product.ALIBABA_KVSTORE, Product.TENCENT_POSTGRES, Product.TENCENT_TDMYSQL}
    ),
}


class SecretSubType(enum.StrEnum):
    """KMS ``ExtendedConfig.SecretSubType``: one account, or two that alternate (overlap on
    engines with one password per account)."""

    SINGLE_USER = "SingleUser"
    DOUBLE_USERS = "DoubleUsers"


class VersionStage(enum.StrEnum):
    """The version stages both vendors use."""

    CURRENT = "ACSCurrent"
    PREVIOUS = "ACSPrevious"


class FlowState(enum.StrEnum):
    """A rotation flow's state (Tencent ``DescribeAsyncRequestInfo``: 0 running, 1 success,
    2 failed)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (FlowState.SUCCEEDED, FlowState.FAILED)


class FlowTrigger(enum.StrEnum):
    """Why a flow ran."""

    CREATE = "create"
    MANUAL = "manual"
    SCHEDULE = "schedule"
    RETRY = "retry"


class DropOld(enum.StrEnum):
    """When an overlap rotation's old password goes: once no session that logged in before
    the rotation remains or the overlap ends, whichever comes first, or only at its end."""

    WHEN_UNUSED = "when-unused"
    AT_GRACE_END = "at-grace-end"


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretSpec:
    """What a secret is: declared by the inventory, the CLI or a vendor ``CreateSecret``."""

    tenant_id: str
    name: str
    vendor: SecretVendor
    instance_id: str
    account: str
    #: None: no automatic rotation.
    rotation: timedelta | None = None
    #: Time of day (UTC) the period's window opens; None: the secret's creation time.
    begin: time | None = None
    #: How long after a slot a rotation may start; None: any time before the next slot.
    window: timedelta | None = None
    #: None: replace mode (the old password stops working at once).
    overlap: timedelta | None = None
    #: Overlap mode: when the old password is dropped.
    drop_old: DropOld = DropOld.AT_GRACE_END
    #: Overlap mode: at the overlap's end, end the sessions still open from before the
    #: rotation (counted and audited) as the old password is dropped.
    end_old_sessions: bool = False
    description: str = ""
    sub_type: SecretSubType = SecretSubType.SINGLE_USER
    #: Where it was declared (``keyturn.core.model.KeySource`` value).
    source: str = "cli"

    def __post_init__(self) -> None:
        check_spec(self)


def check_spec(spec: SecretSpec) -> None:
    """``InvalidParameterValue`` naming the first field out of bounds."""
    if not SECRET_NAME.match(spec.name):
        raise InvalidParameterValue(
            "secret name must be 1-128 letters, digits, '_', '-' or '.', starting with a letter "
            "or digit"
        )
    if not spec.account or len(spec.account) > 128:
        raise InvalidParameterValue("account must be 1-128 characters")
    if not spec.tenant_id or not spec.instance_id:
        raise InvalidParameterValue("tenant and instance are required")
    if spec.rotation is not None and not MIN_PERIOD <= spec.rotation <= MAX_PERIOD:
        raise InvalidParameterValue("rotation period must be between 1 second and 365 days")
    if spec.window is not None:
        if spec.window <= timedelta(0):
            raise InvalidParameterValue("rotation window must be positive")
        if spec.rotation is not None and spec.window > spec.rotation:
            raise InvalidParameterValue("rotation window must not exceed the period")
    if spec.overlap is not None and not timedelta(0) < spec.overlap <= MAX_OVERLAP:
        raise InvalidParameterValue("overlap must be positive and at most 30 days")
    if spec.overlap is not None and spec.rotation is not None and spec.overlap >= spec.rotation:
        raise InvalidParameterValue("overlap must be shorter than the rotation period")
    if spec.overlap is None and (spec.drop_old is DropOld.WHEN_UNUSED or spec.end_old_sessions):
        raise InvalidParameterValue("drop_old and end_old_sessions need an overlap")
    if len(spec.description) > MAX_DESCRIPTION:
        raise InvalidParameterValue(f"description must be at most {MAX_DESCRIPTION} characters")


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretRecord:
    """A stored secret: its spec and its rotation state."""

    spec: SecretSpec
    created_at: datetime
    #: Automatic rotation on (a period is set and it is not paused).
    rotation_enabled: bool
    #: The slot the scheduler fires next (None: not scheduled).
    next_rotation_at: datetime | None = None
    last_rotation_at: datetime | None = None
    current_version: str | None = None
    #: Failed tries since the last success (the backoff's exponent).
    failures: int = 0
    #: A slot of the schedule: the others are ``anchor_at + k * period``.
    anchor_at: datetime | None = None
    #: When an operator asked for a rotation now (the due slot fires as ``manual``); None
    #: once a flow has ended since.
    rotate_requested_at: datetime | None = None

    @property
    def tenant_id(self) -> str:
        return self.spec.tenant_id

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretVersion:
    """One password of a secret. ``password`` is a ``Secret``: printing a version is safe."""

    version_id: str
    stages: tuple[VersionStage, ...]
    created_at: datetime
    password: Secret = field(repr=False)
    #: The login name this password belongs to (the secret's account, or with PostgreSQL
    #: ``DoubleUsers`` the alternate role).
    account: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RotationFlow:
    """One rotation attempt; the finished ones are the rotation history."""

    flow_id: str
    tenant_id: str
    name: str
    state: FlowState
    trigger: FlowTrigger
    created_at: datetime
    #: The version this flow makes (promoted to ``ACSCurrent`` only when it succeeds).
    version_id: str
    #: The login name the new password is set on.
    account: str
    attempt: int = 1
    task_id: int | None = None
    finished_at: datetime | None = None
    message: str = ""
    error_code: str | None = None
    #: Overlap mode: when the durable follow-up drops the previous password.
    drop_old_at: datetime | None = None
    #: How many tries of that drop failed so far (in the store: any node's tries count).
    drop_failures: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RotationStatus:
    """What ``DescribeRotationDetail`` / KMS ``DescribeSecret`` report about the schedule."""

    enabled: bool
    period: timedelta | None
    begin: time | None
    window: timedelta | None
    overlap: timedelta | None
    next_rotation_at: datetime | None
    last_rotation_at: datetime | None
    #: A rotation is in flight (its flow id), if any.
    running_flow: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretCreated:
    """What creating a secret answers: the secret and the flow that set its first version."""

    secret: SecretRecord
    flow_id: str


def flow_lock_key(instance_id: str, account: str) -> str:
    """At most one unfinished rotation flow per instance account (the store's unique key), so
    two secrets of one account never rotate at once."""
    return f"{instance_id}\x1f{account}"


class SecretRepo(Protocol):
    """Secrets, their sealed versions, rotation flows and schedule state in the store.

    Wherever a ``next_rotation_at`` is set by ``insert_secret``/``update_spec``/
    ``set_rotation``, it also becomes the schedule's ``anchor_at``.
    """

    async def insert_secret(
        self, spec: SecretSpec, *, created_at: datetime, next_rotation_at: datetime | None
    ) -> SecretRecord:
        """``SecretExists`` if the tenant has a secret of that name."""
        ...

    async def update_spec(
        self, spec: SecretSpec, *, next_rotation_at: datetime | None
    ) -> SecretRecord:
        """Replace a secret's spec (inventory reconciliation); ``SecretNotFound``."""
        ...

    async def get_secret(self, tenant_id: str, name: str) -> SecretRecord:
        """``SecretNotFound`` if absent (or another tenant's)."""
        ...

    async def list_secrets(
        self, tenant_id: str | None, *, page: Page | None = None, source: str | None = None
    ) -> tuple[list[SecretRecord], int]:
        """A page of secrets in (tenant, name) order, and how many there are."""
        ...

    async def set_rotation(
        self,
        tenant_id: str,
        name: str,
        *,
        enabled: bool,
        period: timedelta | None,
        begin: time | None,
        window: timedelta | None,
        next_rotation_at: datetime | None,
    ) -> SecretRecord: ...

    async def delete_secret(self, tenant_id: str, name: str) -> bool:
        """Remove the secret with its versions and flows."""
        ...

    async def versions(self, tenant_id: str, name: str) -> list[SecretVersion]:
        """Every version, newest first."""
        ...

    async def start_flow(
        self,
        flow: RotationFlow,
        version: SecretVersion,
        *,
        lock_key: str,
        expect_next: datetime | None = None,
        next_rotation_at: datetime | None = None,
    ) -> bool:
        """Insert ``flow`` (unfinished, holding ``lock_key``) with its pending ``version``
        (sealed, no stage yet). With ``expect_next`` (a
        scheduled fire) only if the secret's ``next_rotation_at`` still is ``expect_next``,
        moving it to ``next_rotation_at`` in the same transaction: False when another node
        fired that slot. ``OperationInProgress`` if ``lock_key`` is held by an unfinished
        flow."""
        ...

    async def reschedule(
        self, tenant_id: str, name: str, *, expect_next: datetime, next_rotation_at: datetime
    ) -> bool:
        """Move a due slot (a catch-up postponed to its window): a compare-and-set like
        ``start_flow``'s."""
        ...

    async def mark_requested(self, tenant_id: str, name: str, *, at: datetime) -> None:
        """An operator asked for a rotation now: the next flow the scheduler fires for the
        secret is ``manual``; the end of a flow started after the request clears it."""
        ...

    async def set_flow_task(self, flow_id: str, task_id: int) -> None:
        """Record the task that applies the flow's password (the flow is then running)."""
        ...

    async def finish_flow(
        self,
        flow_id: str,
        *,
        succeeded: bool,
        at: datetime,
        message: str = "",
        error_code: str | None = None,
        next_rotation_at: datetime | None = None,
        drop_old_at: datetime | None = None,
    ) -> bool:
        """End an unfinished flow (False: already ended, by another node). On success its
        version becomes ``ACSCurrent``, the current one ``ACSPrevious`` and the previous one
        loses its stage, in the same transaction; the secret's ``next_rotation_at`` becomes
        ``next_rotation_at`` (a retry time after a failure)."""
        ...

    async def get_flow(self, tenant_id: str, flow_id: str) -> RotationFlow:
        """``RotationFlowNotFound`` if absent (or another tenant's)."""
        ...

    async def flows(self, tenant_id: str, name: str, *, limit: int) -> list[RotationFlow]:
        """The secret's flows, newest first."""
        ...

    async def unfinished_flows(self) -> list[RotationFlow]: ...

    async def pending_work(self) -> PendingWork:
        """Whether any flow is unfinished and the earliest slot and drop time, in one cheap
        indexed read (what every node's scheduler asks at every tick)."""
        ...

    async def due_secrets(self, now: datetime) -> list[SecretRecord]:
        """Secrets with rotation enabled whose ``next_rotation_at`` is at or before ``now``."""
        ...

    async def due_drops(self, now: datetime) -> list[RotationFlow]:
        """Succeeded overlap flows whose old password is due to be dropped."""
        ...

    async def pending_unused_drops(self, now: datetime) -> list[RotationFlow]:
        """Succeeded overlap flows whose old password is still held (its drop not yet due)
        and whose secret drops it once unused (``DropOld.WHEN_UNUSED``); at most 100."""
        ...

    async def claim_drop(
        self,
        flow_id: str,
        *,
        expect: datetime,
        until: datetime | None,
        failures: int | None = None,
    ) -> bool:
        """Compare-and-set the flow's ``drop_old_at`` from ``expect`` to ``until`` (a later
        time: this node's claim or a retry; None: dropped), with ``failures`` as its
        ``drop_failures`` when given. False if another node moved it."""
        ...
