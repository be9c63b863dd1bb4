"""The store's tables, as SQLAlchemy Core metadata shared by the queries and the migrations.

Portable between SQLite and PostgreSQL: timestamps are timezone-aware UTC (``UtcDateTime``:
fixed-width ISO text on SQLite, ``timestamptz`` on PostgreSQL), task steps are JSON text, and
every secret column holds a ``SecretBox`` token, never plaintext. The partial unique index on
``tasks.lock_key`` over active states is what allows at most one active task per instance
account. Migrations in ``keyturn.store.migrations`` create exactly this schema. Imports:
SQLAlchemy, ``keyturn.core`` and the standard library.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from keyturn.core.tasks import ACTIVE_STATES

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: The WHERE clause of the one-active-task-per-account index (also written in 0001_initial).
ACTIVE_TASK_WHERE: Final = "state IN ({})".format(", ".join(f"'{s.value}'" for s in ACTIVE_STATES))
ACTIVE_LOCK_INDEX: Final = "uq_tasks_active_lock_key"


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp; naive datetimes are refused.

    SQLite stores ``YYYY-MM-DDTHH:MM:SS.ffffff+00:00`` (fixed width, so text order is time
    order); PostgreSQL stores ``timestamp with time zone``.
    """

    impl = sa.String(32)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(sa.DateTime(timezone=True))
        return dialect.type_descriptor(sa.String(32))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("timestamps must be timezone-aware")
        value = value.astimezone(UTC)
        if dialect.name == "postgresql":
            return value
        return value.isoformat(timespec="microseconds")

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


#: A 64-bit key: BIGINT on PostgreSQL, INTEGER on SQLite (where an INTEGER primary key is the
#: table's 64-bit rowid).
BigKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
#: Task ids: random in [1, 2**53), chosen by ``keyturn.store.task_repo`` (they say nothing
#: across tenants).
TaskId = BigKey

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

access_keys = sa.Table(
    "access_keys",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("secret_sealed", sa.Text(), nullable=False),
    sa.Column("enabled", sa.Boolean(), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    # JSON list of policy documents; NULL: the key is its tenant's administrator.
    sa.Column("policies", sa.Text(), nullable=True),
    sa.Index("ix_access_keys_tenant_id", "tenant_id"),
)

instances = sa.Table(
    "instances",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("product", sa.String(64), nullable=False),
    sa.Column("region", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("password_free_allowed", sa.Boolean(), nullable=False),
    sa.Column("no_auth", sa.Boolean(), nullable=True),
    sa.Column("engine_version", sa.String(64), nullable=True),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    # Resets of keyturn's own admin accounts and of superusers through the vendor APIs.
    sa.Column("allow_admin_reset", sa.Boolean(), nullable=False, server_default=sa.false()),
    # A Redis Cluster: its nodes are seeds; shards are discovered at every task.
    sa.Column("cluster", sa.Boolean(), nullable=False, server_default=sa.false()),
    # Operator labels as a sorted JSON object ({"env": "prod"}); NULL: none (migration 0014).
    sa.Column("labels", sa.Text(), nullable=True),
    # Serves both "this tenant's instances" and their listing in id order.
    sa.Index("ix_instances_tenant_id_id", "tenant_id", "id"),
    sa.Index("ix_instances_tenant_id_product_id", "tenant_id", "product", "id"),
)

nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column(
        "instance_id",
        sa.String(128),
        sa.ForeignKey("instances.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("ordinal", sa.Integer(), primary_key=True),
    sa.Column("public_url", sa.Text(), nullable=False),
    sa.Column("username", sa.String(200), nullable=False),
    sa.Column("password_sealed", sa.Text(), nullable=True),
    sa.Column("pending_password_sealed", sa.Text(), nullable=True),
    # ``member`` (a data node; its role is discovered) or ``sentinel``.
    sa.Column("role", sa.String(16), nullable=False, server_default="member"),
)

tasks = sa.Table(
    "tasks",
    metadata,
    # Random, given at insert (``keyturn.store.task_repo``): never a global sequence.
    sa.Column("id", TaskId, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("instance_id", sa.String(128), nullable=False),
    sa.Column("account", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("message", sa.Text(), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("steps", sa.Text(), nullable=False),
    sa.Column("lock_key", sa.String(400), nullable=False),
    sa.Column("pending_sealed", sa.Text(), nullable=True),
    sa.Column("snapshots_sealed", sa.Text(), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("started_at", UtcDateTime(), nullable=True),
    sa.Column("finished_at", UtcDateTime(), nullable=True),
    sa.Column("verified_at", UtcDateTime(), nullable=True),
    # The lease (``keyturn.core.cluster``): the node running the task, until when, and the
    # fence every write of that node names (incremented at every claim).
    sa.Column("owner", sa.String(128), nullable=True),
    sa.Column("fence", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("lease_until", UtcDateTime(), nullable=True),
    # The DomainError code behind a failure, so a node that did not run the task can answer
    # a synchronous call with the right vendor error.
    sa.Column("error_code", sa.String(64), nullable=True),
    # JSON {endpoint: "started:high"}: each node's connection-id watermark once the change
    # was applied and verified (MariaDB/MySQL, which record no connection start; else NULL).
    sa.Column("session_marks", sa.Text(), nullable=True),
    sa.Index(
        ACTIVE_LOCK_INDEX,
        "lock_key",
        unique=True,
        # Partial on both databases (migration 0001 creates it so on PostgreSQL too). Only
        # SQLite's predicate is declared here: a ``postgresql_where`` makes SQLAlchemy load
        # its PostgreSQL dialect to check the argument, 2 MB of a SQLite server's memory, and
        # nothing builds this index from the metadata.
        sqlite_where=sa.text(ACTIVE_TASK_WHERE),
    ),
    sa.Index("ix_tasks_tenant_id_instance_id_id", "tenant_id", "instance_id", "id"),
    # Task ids are random (they reveal nothing across tenants): listings order by time, then
    # id (on SQLite the rowid ends every index entry, so this index serves both).
    sa.Index("ix_tasks_tenant_id_created_at", "tenant_id", "created_at"),
    # The claimer's scan of unfinished tasks by lease.
    sa.Index("ix_tasks_state_lease_until", "state", "lease_until"),
    # AUTOINCREMENT, from the days of sequential ids (0001_initial): ids are always given now,
    # so it no longer picks them; kept so the schema matches the migrations.
    sqlite_autoincrement=True,
)

cluster_nodes = sa.Table(
    "cluster_nodes",
    metadata,
    # One row per running keyturn node, refreshed by its heartbeat (``keyturn nodes``).
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("started_at", UtcDateTime(), nullable=False),
    sa.Column("heartbeat_at", UtcDateTime(), nullable=False),
    sa.Column("address", sa.String(255), nullable=False, server_default=""),
    sa.Column("version", sa.String(64), nullable=False, server_default=""),
)

generations = sa.Table(
    "generations",
    metadata,
    # A counter per kind of record, bumped in the transaction that changes the set; caches
    # keyed by it (``keyturn.store.listing``) are exact across processes.
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("value", sa.BigInteger(), nullable=False),
)

tenant_rsa_keys = sa.Table(
    "tenant_rsa_keys",
    metadata,
    # The key pair clients encrypt passwords with; the private half sealed like every secret.
    sa.Column(
        "tenant_id",
        sa.String(64),
        sa.ForeignKey("tenants.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("private_key_sealed", sa.Text(), nullable=False),
    sa.Column("public_key", sa.Text(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

policies = sa.Table(
    "policies",
    metadata,
    # Named policy documents a tenant's keys can refer to (inventory ``[[policies]]``, CLI).
    sa.Column(
        "tenant_id",
        sa.String(64),
        sa.ForeignKey("tenants.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("document", sa.Text(), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    # Append-only and hash-chained: ``hash`` = HMAC-SHA256(K, prev_hash + the canonical event
    # JSON), K derived from the master key (``keyturn.store.audit_chain``), so an edited,
    # removed or reordered record breaks the chain and only the key holder can rewrite it.
    # 64-bit (migration 0017): one record per signed call outgrows 32 bits within a month at
    # a thousand calls a second. SQLite's INTEGER primary key is its 64-bit rowid.
    sa.Column("seq", BigKey, primary_key=True, autoincrement=False),
    sa.Column("at", UtcDateTime(), nullable=False),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("key_id", sa.String(128), nullable=False),
    sa.Column("event", sa.Text(), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    # ``hmac-sha256``, or ``sha256`` (records from before the chain was keyed, until the
    # server's next start re-keys them).
    sa.Column("scheme", sa.String(16), nullable=False, server_default="sha256"),
    sa.Index("ix_audit_log_tenant_id_seq", "tenant_id", "seq"),
)

replay_nonces = sa.Table(
    "replay_nonces",
    metadata,
    # Nonces (or signatures) of verified requests until they expire: a captured request is
    # refused after a restart and on every node sharing the store. ``digest`` is the nonce's
    # SHA-256, so a row's size is never the client's to choose.
    sa.Column("scope", sa.String(128), primary_key=True),
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
    sa.Index("ix_replay_nonces_expires_at", "expires_at"),
)

rate_windows = sa.Table(
    "rate_windows",
    metadata,
    # Calls accepted per (tenant, action) in one wall-clock second, shared by every node on
    # the store (``keyturn.store.rates``); rows of past seconds are purged.
    sa.Column("tenant_id", sa.String(64), primary_key=True),
    sa.Column("action", sa.String(128), primary_key=True),
    sa.Column("second", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("count", sa.Integer(), nullable=False),
)

change_locks = sa.Table(
    "change_locks",
    metadata,
    # Wrong old passwords per account and the lock they lead to (``keyturn.store.change_locks``),
    # shared by every node and kept across restarts. ``key`` is the SHA-256 of the account's
    # (tenant, instance, account), so a row's size is never the caller's to choose.
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("failures", sa.Integer(), nullable=False),
    sa.Column("locked_until", UtcDateTime(), nullable=True),
)

admin_tokens = sa.Table(
    "admin_tokens",
    metadata,
    # Bearer tokens of the admin API (``keyturn.core.admin_tokens``): only the SHA-256 of the
    # token is kept, unique, so a request finds its token by one indexed equality.
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    # NULL: every tenant.
    sa.Column("tenant_id", sa.String(64), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("revoked_at", UtcDateTime(), nullable=True),
    sa.Column("last_used_at", UtcDateTime(), nullable=True),
)

secrets = sa.Table(
    "secrets",
    metadata,
    # Managed secrets (``keyturn.core.secret_manager``) and their schedule state. Periods are
    # whole seconds; ``begin_time`` is ``HH:MM:SS`` (UTC). ``next_rotation_at`` is the one
    # value nodes compare-and-set to fire a slot (or a retry) exactly once.
    sa.Column("tenant_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("vendor", sa.String(16), nullable=False),
    sa.Column("instance_id", sa.String(64), nullable=False),
    sa.Column("account", sa.String(128), nullable=False),
    sa.Column("rotation_seconds", sa.BigInteger(), nullable=True),
    sa.Column("begin_time", sa.String(8), nullable=True),
    sa.Column("window_seconds", sa.BigInteger(), nullable=True),
    sa.Column("overlap_seconds", sa.BigInteger(), nullable=True),
    sa.Column("description", sa.String(2048), nullable=False),
    sa.Column("sub_type", sa.String(16), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("rotation_enabled", sa.Boolean(), nullable=False),
    sa.Column("anchor_at", UtcDateTime(), nullable=True),
    sa.Column("next_rotation_at", UtcDateTime(), nullable=True, index=True),
    sa.Column("last_rotation_at", UtcDateTime(), nullable=True),
    sa.Column("current_version", sa.String(40), nullable=True),
    sa.Column("failures", sa.Integer(), nullable=False),
    # An operator asked for a rotation now (``rotate-now``): the fired flow is ``manual``.
    sa.Column("rotate_requested_at", UtcDateTime(), nullable=True),
    # Overlap mode: when the old password goes ("when-unused", "at-grace-end"; NULL: the
    # latter) and whether its remaining sessions are ended at the grace end.
    sa.Column("drop_old", sa.String(16), nullable=True),
    sa.Column("end_old_sessions", sa.Boolean(), nullable=True),
    # A fleet job asks, for each of its targets, which secret holds the account, the first by
    # name (``secret_for``): this index alone answers it, sorted.
    sa.Index(
        "ix_secrets_tenant_id_instance_id_account_name",
        "tenant_id",
        "instance_id",
        "account",
        "name",
    ),
)

secret_versions = sa.Table(
    "secret_versions",
    metadata,
    # One password per row, sealed under a context naming the secret and version. ``stage`` is
    # ``ACSCurrent``, ``ACSPrevious`` or empty (pending, failed or retired: never handed out).
    sa.Column("tenant_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("version_id", sa.String(40), primary_key=True),
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("account", sa.String(128), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("password_sealed", sa.Text(), nullable=False),
)

secret_flows = sa.Table(
    "secret_flows",
    metadata,
    # Rotation flows, finished ones being the history. ``lock_key`` (instance, account) is set
    # while the flow is unfinished and NULL after: its unique constraint allows one unfinished
    # flow per instance account (NULLs are distinct on both stores).
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("version_id", sa.String(40), nullable=False),
    sa.Column("account", sa.String(128), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("task_id", TaskId, nullable=True),
    sa.Column("lock_key", sa.String(200), nullable=True, unique=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("finished_at", UtcDateTime(), nullable=True),
    sa.Column("message", sa.String(1024), nullable=False),
    sa.Column("error_code", sa.String(64), nullable=True),
    # Overlap mode: when the old password is dropped (NULL: nothing to drop, or dropped).
    sa.Column("drop_old_at", UtcDateTime(), nullable=True, index=True),
    # Failed tries of that drop, so far: the next one's backoff, whichever node makes it.
    sa.Column("drop_failures", sa.Integer(), nullable=False, server_default="0"),
    sa.Index("ix_secret_flows_tenant_id_name_created_at", "tenant_id", "name", "created_at"),
)

fleet_jobs = sa.Table(
    "fleet_jobs",
    metadata,
    # A fleet rotation (``keyturn.core.fleet``): what it selects, how it runs, where it stands,
    # and the lease of the one node driving it (owner, fence incremented at every claim, end).
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("selector", sa.Text(), nullable=False),
    sa.Column("options", sa.Text(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("waves", sa.Integer(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Column("owner", sa.String(128), nullable=True),
    sa.Column("fence", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("lease_until", UtcDateTime(), nullable=True),
    sa.Index("ix_fleet_jobs_state_lease_until", "state", "lease_until"),
    sa.Index("ix_fleet_jobs_tenant_id_created_at", "tenant_id", "created_at"),
)

fleet_targets = sa.Table(
    "fleet_targets",
    metadata,
    # One account of one instance in a fleet job, in selection order (``seq``). ``task_id`` is
    # written before the task's engine is touched; ``password_sealed`` holds the attempt's new
    # password (a ``SecretBox`` token) until it is delivered or the attempt fails.
    sa.Column(
        "job_id",
        sa.String(32),
        sa.ForeignKey("fleet_jobs.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("instance_id", sa.String(128), nullable=False),
    sa.Column("product", sa.String(64), nullable=False),
    sa.Column("account", sa.String(200), nullable=False),
    sa.Column("wave", sa.Integer(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("task_id", TaskId, nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("password_sealed", sa.Text(), nullable=True),
    sa.Column("delivered_to", sa.String(400), nullable=False),
    # A target whose account has a managed secret rotates through the secret's rotation flow
    # (migration 0014): its id, written before the flow starts, so a restart follows that flow.
    sa.Column("flow_id", sa.String(40), nullable=True),
    # The driver's scans: the next pending targets of a wave, those in flight, the counts.
    sa.Index("ix_fleet_targets_job_id_state_wave_seq", "job_id", "state", "wave", "seq"),
)
