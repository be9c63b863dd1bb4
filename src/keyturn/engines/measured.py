"""An engine driver that times its operations: latency and errors by engine and operation.

``EngineRegistry`` wraps each driver it builds in a ``MeasuredEngine`` when it has a
``Metrics`` (``keyturn.core.metrics``). Every port method is timed, and so are the steps and
checks of the plans the driver builds (``apply``, ``undo``, ``verify``), so a reset's engine work
is measured as the task runner sees it, retries included one by one. Labels are the engine kind,
an operation name written here and, for a failure, the ``DomainError`` class (a bounded set):
never an endpoint, an account or an error's text. Imports: ``keyturn.core`` only.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from keyturn.core.engine_ports import (
    AccountInfo,
    ApplyResult,
    CredentialSnapshot,
    Engine,
    EngineInfo,
    Session,
    SessionMark,
)
from keyturn.core.errors import DomainError
from keyturn.core.metrics import Metrics
from keyturn.core.model import Instance, Node
from keyturn.core.plans import Change, ChangePlan, Check, PlanStep, Topology
from keyturn.core.secrets import Secret

T = TypeVar("T")


class _Timer:
    """Times awaitables for one engine kind."""

    __slots__ = ("_engine", "_metrics")

    def __init__(self, engine: str, metrics: Metrics) -> None:
        self._engine = engine
        self._metrics = metrics

    async def __call__(self, op: str, work: Awaitable[T]) -> T:
        started = time.perf_counter()
        error: str | None = None
        try:
            return await work
        except DomainError as exc:
            error = type(exc).__name__
            raise
        except Exception:
            # Drivers translate their errors; anything else is keyturn's own fault.
            error = "InternalError"
            raise
        finally:
            self._metrics.engine_op(self._engine, op, time.perf_counter() - started, error)


@dataclass(frozen=True, slots=True)
class _MeasuredStep:
    step: PlanStep
    timer: _Timer

    @property
    def label(self) -> str:
        return self.step.label

    @property
    def endpoint(self) -> str:
        return self.step.endpoint

    async def apply(self) -> str:
        return await self.timer("apply", self.step.apply())

    async def undo(self) -> None:
        await self.timer("undo", self.step.undo())


@dataclass(frozen=True, slots=True)
class _MeasuredCheck:
    check: Check
    timer: _Timer

    @property
    def endpoint(self) -> str:
        return self.check.endpoint

    async def verify(self) -> None:
        await self.timer("check", self.check.verify())


class MeasuredEngine:
    """``engine`` with every operation timed into ``metrics``."""

    def __init__(self, engine: Engine, metrics: Metrics) -> None:
        self.inner = engine
        self.kind = engine.kind
        self._timer = _Timer(engine.kind.value, metrics)

    async def probe(self, node: Node, account: str | None = None) -> EngineInfo:
        return await self._timer("probe", self.inner.probe(node, account))

    async def list_accounts(self, node: Node) -> list[AccountInfo]:
        return await self._timer("list_accounts", self.inner.list_accounts(node))

    async def snapshot(self, node: Node, account: str) -> CredentialSnapshot:
        return await self._timer("snapshot", self.inner.snapshot(node, account))

    async def password_matches(self, node: Node, account: str, password: Secret) -> bool:
        return await self._timer(
            "password_matches", self.inner.password_matches(node, account, password)
        )

    async def create_account(
        self, node: Node, account: str, password: Secret, *, read_only: bool
    ) -> ApplyResult:
        return await self._timer(
            "create_account",
            self.inner.create_account(node, account, password, read_only=read_only),
        )

    async def drop_account(self, node: Node, account: str) -> ApplyResult:
        return await self._timer("drop_account", self.inner.drop_account(node, account))

    async def verify(self, node: Node, account: str, password: Secret | None) -> None:
        await self._timer("verify", self.inner.verify(node, account, password))

    async def verify_logins(self, node: Node, account: str, passwords: Sequence[Secret]) -> None:
        await self._timer("verify_logins", self.inner.verify_logins(node, account, passwords))

    def overlap_partner(self, account: str) -> str | None:
        return self.inner.overlap_partner(account)

    def prepare(self, node: Node, account: str, password: Secret) -> None:
        self.inner.prepare(node, account, password)  # not timed: it starts work, awaits none

    async def list_sessions(self, node: Node, account: str) -> list[Session]:
        return await self._timer("list_sessions", self.inner.list_sessions(node, account))

    async def session_mark(self, node: Node) -> SessionMark | None:
        return await self._timer("session_mark", self.inner.session_mark(node))

    async def end_sessions(self, node: Node, account: str, ids: Sequence[str]) -> int:
        return await self._timer("end_sessions", self.inner.end_sessions(node, account, ids))

    async def discover(self, instance: Instance) -> Topology:
        return await self._timer("discover", self.inner.discover(instance))

    def plan(
        self,
        topology: Topology,
        change: Change,
        snapshots: Mapping[str, CredentialSnapshot],
    ) -> ChangePlan:
        plan = self.inner.plan(topology, change, snapshots)
        return replace(
            plan,
            steps=tuple(_MeasuredStep(step, self._timer) for step in plan.steps),
            checks=tuple(_MeasuredCheck(check, self._timer) for check in plan.checks),
        )

    async def forget(self, node: Node) -> None:
        await self.inner.forget(node)

    async def close(self) -> None:
        await self.inner.close()
