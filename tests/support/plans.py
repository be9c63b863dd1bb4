"""Driving an engine's change plans from tests, as the worker does: discover the instance,
snapshot every node, build the plan, apply its steps, run its checks, undo on demand.

Contract tests use it to exercise the plan an engine builds against real servers without the
store or the worker around it; the worker's own logic is unit-tested with a fake engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from keyturn.core.engine_ports import CredentialSnapshot, Engine
from keyturn.core.model import EngineKind, Instance, Node, NodeRole, Product, parse_node_url
from keyturn.core.plans import Change, ChangeMode, ChangePlan
from keyturn.core.secrets import Secret
from keyturn.service.plan_runner import with_pending


def instance_of(
    urls: Sequence[str],
    *,
    sentinels: Sequence[str] = (),
    product: Product = Product.TENCENT_REDIS,
    instance_id: str = "crs-plan0001",
    cluster: bool = False,
) -> Instance:
    """An ``Instance`` of these node URLs (admin logins), as the inventory would declare it."""
    engine = product.engine
    nodes = tuple(
        Node(instance_id=instance_id, ordinal=i, address=parse_node_url(url, engine))
        for i, url in enumerate(urls)
    )
    watchers = tuple(
        Node(
            instance_id=instance_id,
            ordinal=1000 + i,
            address=parse_node_url(url, EngineKind.REDIS),
            role=NodeRole.SENTINEL,
        )
        for i, url in enumerate(sentinels)
    )
    return Instance(
        id=instance_id,
        tenant_id="1300000001",
        product=product,
        region="ap-guangzhou",
        nodes=nodes,
        sentinels=watchers,
        cluster=cluster,
    )


@dataclass
class PlanRun:
    plan: ChangePlan
    snapshots: dict[str, CredentialSnapshot]
    applied: int = 0

    async def apply(self, upto: int | None = None) -> None:
        """Apply the steps (the first ``upto`` of them)."""
        for step in self.plan.steps[self.applied : upto]:
            await step.apply()
            self.applied += 1

    async def check(self) -> None:
        for check in self.plan.checks:
            await check.verify()

    async def undo(self) -> None:
        for step in reversed(self.plan.steps[: self.applied]):
            await step.undo()
        self.applied = 0


async def planned(
    engine: Engine,
    instance: Instance,
    account: str,
    password: str | None,
    mode: ChangeMode = ChangeMode.REPLACE,
) -> PlanRun:
    """Discover, snapshot every node and plan a change of ``account`` to ``password`` (an
    overlap's ``ADD`` or ``KEEP_ONLY`` with ``mode``)."""
    change = Change(account, None if password is None else Secret(password), mode)
    # As the worker does: keyturn's own login, when it is the account, gets the new password
    # as its pending credential (so keyturn can log in again before and after).
    topology = with_pending(await engine.discover(instance), change)
    snapshots = {n.endpoint: await engine.snapshot(n, account) for n in topology.nodes}
    return PlanRun(engine.plan(topology, change, snapshots), snapshots)
