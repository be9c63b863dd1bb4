"""``SqlStore``: the ``Store`` port (``keyturn.core.store_ports``) over one SQL database.

One code path for SQLite (the embedded default) and PostgreSQL, through SQLAlchemy Core (no
ORM). The store is a composite: each port is answered by a part on the same ``SqlDatabase``
(``keyturn.store.base``), tenants and keys by ``tenant_repo``, instances by ``instance_repo``,
tasks by ``task_repo``, and policies, RSA keys, replay nonces, rate windows, change locks and
leases by the modules of those names; ``Forward`` exposes each part's methods on the store, so
it satisfies the port protocols the parts implement. This module also checks that the node's
master key opens the store's secrets and reports readiness. Opening one (migrate, then open)
is ``keyturn.store.opening``. Imports: ``keyturn.core``, SQLAlchemy, this package and the
standard library.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Final

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from keyturn.core.errors import InternalError
from keyturn.core.ports import Clock, SecretBox
from keyturn.store import rows
from keyturn.store.base import Engine, Forward, SqlDatabase, guarded
from keyturn.store.change_locks import SqlChangeLocks
from keyturn.store.instance_repo import SqlInstanceRepo
from keyturn.store.leases import SqlLeases
from keyturn.store.migrate import SCHEMA_HEAD
from keyturn.store.policies import SqlPolicies
from keyturn.store.rates import SqlRates
from keyturn.store.replay import SqlReplay
from keyturn.store.rsa_keys import SqlRsaKeys
from keyturn.store.schema import access_keys
from keyturn.store.task_repo import SqlTaskRepo
from keyturn.store.tenant_repo import SqlTenantRepo

#: The schema revision Alembic records (``readiness``).
_SCHEMA_REVISION: Final = sa.text("SELECT version_num FROM alembic_version")


class SqlStore:
    """Every part of the store on one ``SqlDatabase`` (``db``): ``tenants`` (and access keys),
    ``instances``, ``tasks``, ``rsa_keys``, ``policies``, ``replay``, ``rates``,
    ``change_locks`` and ``leases``; together the ``Store`` and ``PasswordCipher`` ports."""

    def __init__(self, engine: Engine, box: SecretBox, clock: Clock) -> None:
        self.db = SqlDatabase(engine, box, clock)
        self.policies = SqlPolicies(self.db)
        self.tenants = SqlTenantRepo(self.db, self.policies)
        self.instances = SqlInstanceRepo(self.db)
        self.tasks = SqlTaskRepo(self.db)
        self.rsa_keys = SqlRsaKeys(self.db)
        self.replay = SqlReplay(self.db)
        self.rates = SqlRates(self.db)
        self.change_locks = SqlChangeLocks(self.db)
        self.leases = SqlLeases(self.db)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.db!r})"

    @property
    def engine(self) -> Engine:
        """The underlying engine (for tools and tests; the service never uses it)."""
        return self.db.engine

    async def close(self) -> None:
        await self.db.close()

    def writes_together(self) -> AbstractAsyncContextManager[None]:
        """The ``Store`` port's unit of work: see ``SqlDatabase.together``."""
        return self.db.together()

    def writes_for_starter(self) -> AbstractContextManager[None]:
        """The ``Store`` port's writes on behalf of a unit: see ``SqlDatabase.for_the_starter``."""
        return self.db.for_the_starter()

    @guarded
    async def check_master_key(self) -> None:
        """Refuse a master key that does not open the store's secrets (one access key's is
        tried): a node sharing a PostgreSQL store with a master key of its own (a fresh data
        dir makes one) would otherwise seal what it writes under a key the others lack."""
        query = sa.select(access_keys.c.id, access_keys.c.secret_sealed).limit(1)
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return
        try:
            self.db.unseal(row.secret_sealed, rows.key_secret_context(row.id))
        except InternalError:
            sealed_by = row.secret_sealed.split(":")[1] if row.secret_sealed.count(":") >= 2 else ""
            raise InternalError(
                f"this node's master key does not open the store's secrets (sealed under key"
                f" id {sealed_by or 'unknown'}): every node sharing a store needs the same"
                " master key (KEYTURN_MASTER_KEY, or the same master.key)"
            ) from None

    async def readiness(self) -> str | None:
        """None when the store answers and its schema is the newest this code knows (what
        ``/readyz`` reports); else why not, without any detail of the database."""
        try:
            async with self.db.read() as conn:
                found = await conn.scalar(_SCHEMA_REVISION)
        except (SQLAlchemyError, OSError, TimeoutError):
            return "the store database is unavailable"
        if found != SCHEMA_HEAD:
            return f"the store schema is at revision {found}, not {SCHEMA_HEAD}"
        return None

    # The parts' ports, answered by the parts.
    put_tenant = Forward("tenants", SqlTenantRepo.put_tenant)
    list_tenants = Forward("tenants", SqlTenantRepo.list_tenants)
    tenant_sources = Forward("tenants", SqlTenantRepo.tenant_sources)
    remove_tenant = Forward("tenants", SqlTenantRepo.remove_tenant)
    get_access_key = Forward("tenants", SqlTenantRepo.get_access_key)
    put_access_key = Forward("tenants", SqlTenantRepo.put_access_key)
    list_access_keys = Forward("tenants", SqlTenantRepo.list_access_keys)
    set_access_key_enabled = Forward("tenants", SqlTenantRepo.set_access_key_enabled)
    set_access_key_secret = Forward("tenants", SqlTenantRepo.set_access_key_secret)
    remove_access_key = Forward("tenants", SqlTenantRepo.remove_access_key)
    get_instance = Forward("instances", SqlInstanceRepo.get_instance)
    list_instances = Forward("instances", SqlInstanceRepo.list_instances)
    instance_regions = Forward("instances", SqlInstanceRepo.instance_regions)
    instance_labels = Forward("instances", SqlInstanceRepo.instance_labels)
    put_instance = Forward("instances", SqlInstanceRepo.put_instance)
    remove_instance = Forward("instances", SqlInstanceRepo.remove_instance)
    record_observation = Forward("instances", SqlInstanceRepo.record_observation)
    create_task = Forward("tasks", SqlTaskRepo.create_task)
    new_task_id = Forward("tasks", SqlTaskRepo.new_task_id)
    get_task = Forward("tasks", SqlTaskRepo.get_task)
    list_tasks = Forward("tasks", SqlTaskRepo.list_tasks)
    unfinished_tasks = Forward("tasks", SqlTaskRepo.unfinished_tasks)
    task_counts = Forward("tasks", SqlTaskRepo.task_counts)
    active_task = Forward("tasks", SqlTaskRepo.active_task)
    pending_password = Forward("tasks", SqlTaskRepo.pending_password)
    snapshots = Forward("tasks", SqlTaskRepo.snapshots)
    record_snapshots = Forward("tasks", SqlTaskRepo.record_snapshots)
    update_steps = Forward("tasks", SqlTaskRepo.update_steps)
    write_ahead = Forward("tasks", SqlTaskRepo.write_ahead)
    finish_task = Forward("tasks", SqlTaskRepo.finish_task)
    public_key = Forward("rsa_keys", SqlRsaKeys.public_key)
    rotate = Forward("rsa_keys", SqlRsaKeys.rotate)
    decrypt = Forward("rsa_keys", SqlRsaKeys.decrypt)
    put_policy = Forward("policies", SqlPolicies.put_policy)
    get_policy = Forward("policies", SqlPolicies.get_policy)
    list_policies = Forward("policies", SqlPolicies.list_policies)
    remove_policy = Forward("policies", SqlPolicies.remove_policy)
    key_policies = Forward("policies", SqlPolicies.key_policies)
    set_key_policies = Forward("policies", SqlPolicies.set_key_policies)
    remember_nonce = Forward("replay", SqlReplay.remember_nonce)
    forget_nonce = Forward("replay", SqlReplay.forget_nonce)
    purge_nonces = Forward("replay", SqlReplay.purge_nonces)
    count_call = Forward("rates", SqlRates.count_call)
    purge_rate_windows = Forward("rates", SqlRates.purge_rate_windows)
    count_attempt = Forward("change_locks", SqlChangeLocks.count_attempt)
    missed_attempt = Forward("change_locks", SqlChangeLocks.missed_attempt)
    refund_attempt = Forward("change_locks", SqlChangeLocks.refund_attempt)
    clear_attempts = Forward("change_locks", SqlChangeLocks.clear_attempts)
    locked_until = Forward("change_locks", SqlChangeLocks.locked_until)
    heartbeat = Forward("leases", SqlLeases.heartbeat)
    remove_node = Forward("leases", SqlLeases.remove_node)
    list_nodes = Forward("leases", SqlLeases.list_nodes)
    held_tasks = Forward("leases", SqlLeases.held_tasks)
    claim_task = Forward("leases", SqlLeases.claim_task)
    claim_lapsed = Forward("leases", SqlLeases.claim_lapsed)
    renew_leases = Forward("leases", SqlLeases.renew_leases)
    release_leases = Forward("leases", SqlLeases.release_leases)
