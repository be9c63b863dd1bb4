"""``MeasuredEngine`` without I/O: every port method and every step and check of the plans it
builds is timed under the engine kind and a fixed operation name, failures with their
``DomainError`` class (never an endpoint or a message); the registry wraps the drivers it
builds only when it has metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import pytest

from keyturn.core.engine_ports import CredentialSnapshot, Engine
from keyturn.core.errors import EngineUnavailable, VerificationFailed
from keyturn.core.model import EngineKind, Node
from keyturn.core.plans import Change, ChangePlan, Topology
from keyturn.core.secrets import Secret
from keyturn.engines.measured import MeasuredEngine
from keyturn.engines.registry import EngineRegistry
from tests.support.fakes import RecordingMetrics, fake_instance


class Step:
    label = "set password"
    endpoint = "10.0.0.1:6379"

    async def apply(self) -> str:
        return "not persisted"

    async def undo(self) -> None:
        raise EngineUnavailable("10.0.0.1:6379 is not reachable (ECONNREFUSED)")


class FailingCheck:
    endpoint = "10.0.0.1:6379"

    async def verify(self) -> None:
        raise VerificationFailed("the new password does not log in")


class PlanningEngine:
    kind = EngineKind.POSTGRES

    async def discover(self, instance: Any) -> Topology:
        return Topology(nodes=tuple(instance.nodes), shape="standalone")

    async def verify(self, node: Node, account: str, password: Secret | None) -> None:
        raise RuntimeError("a bug")

    def plan(
        self, topology: Topology, change: Change, snapshots: Mapping[str, CredentialSnapshot]
    ) -> ChangePlan:
        return ChangePlan(topology=topology, steps=(Step(),), checks=(FailingCheck(),))

    async def close(self) -> None:
        pass


def measured() -> tuple[MeasuredEngine, RecordingMetrics]:
    recorder = RecordingMetrics()
    inner: Engine = PlanningEngine()  # type: ignore[assignment]
    return MeasuredEngine(inner, recorder), recorder


async def test_port_methods_are_timed_by_kind_and_operation() -> None:
    engine, recorder = measured()
    instance = fake_instance()
    topology = await engine.discover(instance)
    assert topology.shape == "standalone"
    with pytest.raises(RuntimeError):
        await engine.verify(instance.nodes[0], "app", Secret("Kt-Unit-Passw0rd"))
    assert recorder.of("engine_op") == [
        ("postgres", "discover", ""),
        ("postgres", "verify", "InternalError"),
    ]
    assert all(seconds >= 0 for seconds in recorder.seconds)


async def test_plan_steps_and_checks_are_timed() -> None:
    engine, recorder = measured()
    instance = fake_instance()
    topology = await engine.discover(instance)
    plan = engine.plan(topology, Change("app", Secret("Kt-Unit-Passw0rd")), {})
    [step], [check] = plan.steps, plan.checks
    assert (step.label, step.endpoint, check.endpoint) == (
        "set password",
        Step.endpoint,
        Step.endpoint,
    )
    assert await step.apply() == "not persisted"
    with pytest.raises(EngineUnavailable):
        await step.undo()
    with pytest.raises(VerificationFailed):
        await check.verify()
    assert recorder.of("engine_op")[1:] == [
        ("postgres", "apply", ""),
        ("postgres", "undo", "EngineUnavailable"),
        ("postgres", "check", "VerificationFailed"),
    ]
    # Nothing of a node, an account or a message in any label.
    assert not any("10.0.0.1" in part or part == "app" for r in recorder.recorded for part in r)


def test_the_registry_wraps_only_with_metrics() -> None:
    factories = {EngineKind.POSTGRES: lambda timeout: cast(Engine, PlanningEngine())}
    plain = EngineRegistry(factories=factories)
    assert isinstance(plain.engine(EngineKind.POSTGRES), PlanningEngine)
    wrapped = EngineRegistry(factories=factories, metrics=RecordingMetrics())
    found = wrapped.engine(EngineKind.POSTGRES)
    assert isinstance(found, MeasuredEngine) and found.kind is EngineKind.POSTGRES
    assert wrapped.engine(EngineKind.POSTGRES) is found  # shared, like the driver
