"""The composition root: builds the store, engines, worker, services, dialects and ASGI app.

This is the only module that imports every layer. ``Runtime`` owns the resources it opened and
closes them in reverse order. Each runtime has its own metrics registry
(``keyturn.telemetry.prometheus``), handed to the layers through the ``keyturn.core.metrics``
port and served at ``/metrics``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from starlette.applications import Starlette

from keyturn import __version__
from keyturn.api import AdminApi
from keyturn.config import Settings
from keyturn.console import SESSION_KEY_INFO, Console, Sessions
from keyturn.core.cluster import LeasePolicy
from keyturn.dialects._wire import Dialect
from keyturn.dialects.alibaba import AlibabaDialect
from keyturn.dialects.alibaba.kms import PRODUCT as ALIBABA_KMS
from keyturn.dialects.alibaba.kvstore import PRODUCT as ALIBABA_KVSTORE
from keyturn.dialects.huawei import HuaweiDialect
from keyturn.dialects.huawei.dcs import PRODUCT as HUAWEI_DCS
from keyturn.dialects.tencent import TencentDialect
from keyturn.dialects.tencent.postgres import PRODUCT as TENCENT_POSTGRES
from keyturn.dialects.tencent.redis import PRODUCT as TENCENT_REDIS
from keyturn.dialects.tencent.ssm import PRODUCT as TENCENT_SSM
from keyturn.dialects.tencent.tdmysql import PRODUCT as TENCENT_TDMYSQL
from keyturn.engines.registry import EngineRegistry
from keyturn.http.app import MetricsEndpoint, create_app
from keyturn.service.accounts import Accounts, ChangeGuard
from keyturn.service.admin import Admin
from keyturn.service.admin_tokens import AdminTokens
from keyturn.service.checkpoints import checkpoints_for
from keyturn.service.cluster import ClusterNode, default_node_id
from keyturn.service.context import SystemClock
from keyturn.service.credentials import Credentials
from keyturn.service.encryption import Encryption
from keyturn.service.facade import Services
from keyturn.service.fleet import FleetJobs
from keyturn.service.fleet_delivery import Release, SecretDelivery
from keyturn.service.fleet_runner import FleetDriver
from keyturn.service.gate import Gate
from keyturn.service.leases import Leases
from keyturn.service.operator import Operator
from keyturn.service.queries import Queries
from keyturn.service.ratelimit import RateLimiter
from keyturn.service.replay import ReplayGuard
from keyturn.service.resets import Resets
from keyturn.service.secret_drops import OldPasswordUse
from keyturn.service.secret_rotation import Rotator
from keyturn.service.secret_schedule import SecretScheduler
from keyturn.service.secrets import SecretManager
from keyturn.service.sessions import AccountSessions
from keyturn.service.worker import TaskWorker
from keyturn.store.admin_tokens import SqlAdminTokens
from keyturn.store.audit_keying import start_audit_log
from keyturn.store.datadir import prepare_data_dir
from keyturn.store.fleet import SqlFleetRepo
from keyturn.store.instance_search import SqlInstanceSearch
from keyturn.store.observe import observe_statements
from keyturn.store.opening import open_store, sqlite_url
from keyturn.store.sealing import open_secret_box
from keyturn.store.secrets import SqlSecrets
from keyturn.store.sql import SqlStore
from keyturn.telemetry import sibling_counts
from keyturn.telemetry.prometheus import CONTENT_TYPE, PrometheusMetrics

log = logging.getLogger("keyturn")


@dataclass(slots=True)
class Runtime:
    settings: Settings
    store: SqlStore
    engines: EngineRegistry
    worker: TaskWorker
    services: Services
    cluster: ClusterNode
    admin_api: AdminApi
    metrics: PrometheusMetrics
    console: Console
    #: Fires scheduled secret rotations; started with the cluster node (``keyturn serve``).
    scheduler: SecretScheduler
    fleet: FleetJobs
    fleet_driver: FleetDriver

    def app(self) -> Starlette:
        """The ASGI app; when it shuts down, tasks in flight get ``shutdown_grace`` seconds to
        finish and the rest are parked for the next start."""
        products = [TENCENT_REDIS, TENCENT_POSTGRES, TENCENT_TDMYSQL, TENCENT_SSM]
        hosts = self.settings.served_hosts
        dialects: list[Dialect] = [
            HuaweiDialect(self.services, [HUAWEI_DCS], hosts),
            AlibabaDialect(self.services, [ALIBABA_KVSTORE, ALIBABA_KMS], hosts),
            TencentDialect(self.services, products, hosts),
        ]
        return create_app(
            dialects,
            on_shutdown=[self._shutdown],
            read_timeout=self.settings.read_timeout,
            readiness=self.store.readiness,
            readiness_timeout=self.settings.store_timeout + 1,
            admin_api=self.admin_api,
            metrics=MetricsEndpoint(
                self.metrics.render, CONTENT_TYPE, token=self.settings.metrics_token
            ),
            console=self.console,
        )

    async def _shutdown(self) -> None:
        # Leases are renewed while tasks drain; the parked ones are released for other nodes.
        await self.worker.drain(self.settings.shutdown_grace)
        await self.close()
        log.info("stopped")

    def share_metrics(self) -> None:
        """Under ``--workers``: count with this server's other workers (each worker calls it
        once its runtime is built; the supervisor emptied the directory with
        ``reset_worker_metrics``)."""
        directory = self.settings.data_dir / sibling_counts.DIRECTORY
        self.metrics.share_with(sibling_counts.SiblingCounts(directory, str(os.getpid())))

    async def close(self) -> None:
        await self.metrics.close()
        await self.scheduler.stop()
        await self.fleet_driver.stop()
        await self.cluster.stop()
        await self.engines.close()
        await self.store.close()


def reset_worker_metrics(settings: Settings) -> None:
    """Empty the workers' shared metrics directory before they start (``--workers``)."""
    sibling_counts.SiblingCounts.reset(settings.data_dir / sibling_counts.DIRECTORY)


def store_url_of(settings: Settings) -> str:
    """The store's URL: ``KEYTURN_DATABASE_URL``, else SQLite under the data dir."""
    return settings.database_url or sqlite_url(settings.data_dir)


async def open_admin_store(settings: Settings) -> SqlStore:
    """The store alone, for CLI commands that manage the inventory (the data dir made 0700)."""
    prepare_data_dir(settings.data_dir)
    box = open_secret_box(settings.data_dir, settings.master_key)
    store = await open_store(
        store_url_of(settings), box, SystemClock(), timeout=settings.store_timeout
    )
    try:
        await store.check_master_key()
    except BaseException:
        await store.close()
        raise
    return store


async def build_runtime(settings: Settings) -> Runtime:
    """Open everything the server needs; the audit chain is keyed first if it must be."""
    clock = SystemClock()
    metrics = PrometheusMetrics()
    store = await open_admin_store(settings)
    try:
        audit = await start_audit_log(store, settings.data_dir)
    except BaseException:
        await store.close()
        raise
    observe_statements(store.engine, metrics)
    metrics.count_tasks(store.task_counts)
    engines = EngineRegistry(timeout=settings.engine_timeout, metrics=metrics)
    policy = LeasePolicy(settings.task_lease)
    if settings.engine_timeout > policy.trust_window:
        # An engine operation begun just inside the trust window could outlast the lease.
        log.warning(
            "KEYTURN_ENGINE_TIMEOUT (%gs) exceeds half of KEYTURN_TASK_LEASE (%gs)",
            settings.engine_timeout,
            settings.task_lease,
        )
    leases = Leases(store, settings.node_id or default_node_id(), policy)
    worker = TaskWorker(
        store,
        engines,
        clock,
        max_concurrency=settings.task_concurrency,
        instance_concurrency=settings.instance_concurrency,
        deadline=settings.task_deadline,
        rollback_deadline=settings.rollback_deadline,
        checkpoints=checkpoints_for(settings.fault_pauses),
        leases=leases,
        metrics=metrics,
    )
    metrics.count_leases(lambda: len(leases.held()))
    cluster = ClusterNode(
        store,
        worker,
        leases,
        clock,
        address=f"{settings.scheme}://{settings.host}:{settings.port}",
        version=__version__,
    )
    resets = Resets(store, engines, worker, sync_deadline=settings.sync_deadline)
    credentials = Credentials(store)
    accounts = Accounts(store, engines, resets, ChangeGuard(store, clock))
    secret_repo = SqlSecrets(store.db)
    rotator = Rotator(secret_repo, store, engines, resets, accounts, clock, audit)
    sessions = AccountSessions(store, engines, clock, audit)
    scheduler = SecretScheduler(
        secret_repo,
        rotator,
        clock,
        every=settings.secret_tick,
        old_use=OldPasswordUse(secret_repo, store, rotator, engines, sessions),
    )
    rates = RateLimiter(
        store,
        clock,
        limits=settings.rate_limits,
        default_write=settings.rate_limit_write,
        default_read=settings.rate_limit_read,
    )
    # Fleet jobs: their state is the store's; this node drives the ones it claims, its
    # changes counted in the tenant's vendor rate like API calls.
    fleet_repo = SqlFleetRepo(store.db)
    fleet = FleetJobs(store, fleet_repo)
    fleet_driver = FleetDriver(
        fleet_repo,
        resets,
        rates,
        leases.node_id,
        policy,
        secrets=SecretDelivery(secret_repo, rotator),
        release=Release(store, engines),
        audit=audit,
        clock=clock,
    )
    services = Services(
        credentials=credentials,
        resets=resets,
        queries=Queries(store, engines),
        admin=Admin(store),
        encryption=Encryption(store),
        clock=clock,
        accounts=accounts,
        replay=ReplayGuard(store, clock),
        gate=Gate(
            store,
            credentials,
            rates,
            audit,
            clock,
            metrics,
        ),
        metrics=metrics,
        secrets=SecretManager(secret_repo, rotator, clock, sync_deadline=settings.sync_deadline),
    )
    # The admin API (``/admin/v1/``): the same services, scoped by admin tokens.
    operator = Operator(
        store,
        engines,
        services.queries,
        resets,
        audit,
        SqlInstanceSearch(store),
        sessions=sessions,
    )
    tokens = AdminTokens(SqlAdminTokens(store.db), clock)
    admin_api = AdminApi(operator, tokens, services.gate, fleet)
    # The web console (``/console``): the same operator and tokens; its session cookies are
    # signed with a key derived from the master key, so every node of a cluster accepts them.
    box = open_secret_box(settings.data_dir, settings.master_key)
    console = Console(operator, tokens, services.gate, Sessions(box.derive_keys(SESSION_KEY_INFO)))
    return Runtime(
        settings=settings,
        store=store,
        engines=engines,
        worker=worker,
        services=services,
        cluster=cluster,
        admin_api=admin_api,
        metrics=metrics,
        console=console,
        scheduler=scheduler,
        fleet=fleet,
        fleet_driver=fleet_driver,
    )
