"""What a fleet target's change goes through and what the node lets go afterwards.

``SecretDelivery`` is issue 16's managed secrets seen from a fleet job: when the tenant has a
secret of a target's instance account, the target does not reset the password bare (which
would leave the secret pointing at a password that no longer logs in): it rotates through the
secret's own rotation flow (``Rotator.launch`` with the job's generated password and a flow id
the target row recorded first), so the new password becomes the secret's ``ACSCurrent`` and the
old one ``ACSPrevious`` once its task verified it, with the secret's overlap mode and audit.
``follow`` reads where such a flow stands (settling it from its task, as any node may).
``Release`` closes the pooled admin sessions of an instance whose target ended, so a job over
10,000 instances does not keep 10,000 admin connections (and their memory) open; the next call
to the instance logs in again.
"""

from __future__ import annotations

from dataclasses import dataclass

from keyturn.core.engine_ports import EngineRegistry
from keyturn.core.errors import DomainError, RotationFlowNotFound
from keyturn.core.secret_manager import FlowState, FlowTrigger, SecretRepo
from keyturn.core.secrets import Secret
from keyturn.core.store_ports import InstanceRepo
from keyturn.service.secret_rotation import Rotator, new_id


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowEnd:
    """Where a target's secret rotation flow stands."""

    final: bool
    succeeded: bool = False
    #: The flow's task (None: it failed before any task was queued).
    task_id: int | None = None
    message: str = ""
    error_code: str = ""
    #: Where the password went: ``secret/NAME/version/ID``.
    delivered_to: str = ""


class SecretDelivery:
    """Rotate fleet targets that have a managed secret through the secret's flow."""

    def __init__(self, repo: SecretRepo, rotator: Rotator) -> None:
        self._repo = repo
        self._rotator = rotator

    @staticmethod
    def new_flow_id() -> str:
        return new_id("flow-")

    async def launch(
        self, tenant_id: str, secret_name: str, password: Secret, flow_id: str
    ) -> None:
        """Start the secret's rotation flow ``flow_id`` with ``password`` (its task queued).
        ``OperationInProgress`` while another rotation of the account runs; a flow that
        failed to queue its task has ended failed (``follow`` says so)."""
        record = await self._repo.get_secret(tenant_id, secret_name)
        await self._rotator.launch(record, FlowTrigger.MANUAL, password=password, flow_id=flow_id)

    async def follow(self, tenant_id: str, flow_id: str) -> FlowEnd | None:
        """The flow's state once its task's end is applied; None when no such flow exists
        (its start never happened: nothing changed)."""
        try:
            flow = await self._repo.get_flow(tenant_id, flow_id)
        except RotationFlowNotFound:
            return None
        flow = await self._rotator.settle(flow)
        if not flow.state.final:
            return FlowEnd(final=False, task_id=flow.task_id)
        if flow.state is FlowState.SUCCEEDED:
            return FlowEnd(
                final=True,
                succeeded=True,
                task_id=flow.task_id,
                delivered_to=f"secret/{flow.name}/version/{flow.version_id}",
            )
        return FlowEnd(
            final=True,
            task_id=flow.task_id,
            message=flow.message or "the secret's rotation failed",
            error_code=flow.error_code or "",
        )


class Release:
    """Close the pooled admin sessions of an instance whose target ended (a session an
    operation is using stays: see ``AdminPool.forget``)."""

    def __init__(self, store: InstanceRepo, engines: EngineRegistry) -> None:
        self._store = store
        self._engines = engines

    async def __call__(self, tenant_id: str, instance_id: str) -> None:
        try:
            instance = await self._store.get_instance(tenant_id, instance_id)
            engine = self._engines.engine(instance.engine)
            for node in (*instance.nodes, *instance.sentinels):
                await engine.forget(node)
        except DomainError:
            pass  # best effort: the session stays pooled
