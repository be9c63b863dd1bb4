"""Unit tests of what a reset's health check writes back: the instance's engine version and
password-free mode as its probe found them, and only when they changed (a write per request
would cost every reset a commit)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from keyturn.core.engine_ports import EngineInfo
from keyturn.core.model import EngineKind, Instance, Node
from keyturn.service.resets import Resets
from tests.support.fakes import FakeStore, fake_instance


@dataclass
class ProbedEngine:
    """An engine whose every probe finds ``info``."""

    info: EngineInfo

    async def probe(self, node: Node, account: str | None = None) -> EngineInfo:
        return self.info

    def engine(self, kind: EngineKind) -> ProbedEngine:
        return self

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the engine was not expected to {name}")


@dataclass
class ObservingStore(FakeStore):
    observed: list[dict[str, Any]] = field(default_factory=list)

    async def record_observation(
        self, instance_id: str, *, no_auth: bool | None, engine_version: str | None
    ) -> None:
        self.observed.append({"no_auth": no_auth, "engine_version": engine_version})


async def observed(instance: Instance, info: EngineInfo) -> list[dict[str, Any]]:
    store = ObservingStore({instance.id: instance})
    nothing: Any = None
    await Resets(store, ProbedEngine(info), nothing)._check_health(instance, "app")
    return store.observed


SQL = EngineInfo(version="15.4", accounts=True, password_free=None, account_exists=True)
REDIS = EngineInfo(version="7.2.4", accounts=True, password_free=False, account_exists=True)


@pytest.mark.parametrize("no_auth", [None, False, True])
async def test_a_probe_that_cannot_tell_password_free_writes_nothing_new(
    no_auth: bool | None,
) -> None:
    # SQL engines have no password-free mode: their probe's None is no news about it.
    instance = replace(
        fake_instance(engine=EngineKind.POSTGRES), engine_version="15.4", no_auth=no_auth
    )
    assert await observed(instance, SQL) == []


async def test_an_unchanged_observation_writes_nothing() -> None:
    instance = replace(fake_instance(), engine_version="7.2.4", no_auth=False)
    assert await observed(instance, REDIS) == []


async def test_a_new_version_or_password_free_mode_is_written() -> None:
    instance = replace(fake_instance(), engine_version="7.0.15", no_auth=False)
    assert await observed(instance, REDIS) == [{"no_auth": False, "engine_version": "7.2.4"}]
    instance = replace(fake_instance(), engine_version="7.2.4", no_auth=None)
    assert await observed(instance, REDIS) == [{"no_auth": False, "engine_version": "7.2.4"}]
    nopass = replace(REDIS, password_free=True)
    instance = replace(fake_instance(), engine_version="7.2.4", no_auth=False)
    assert await observed(instance, nopass) == [{"no_auth": True, "engine_version": "7.2.4"}]
