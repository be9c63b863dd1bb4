"""In-memory stand-ins for the service's ports, for unit tests without I/O.

``FakeEngine`` keeps one current password per account and answers ``probe`` and
``password_matches`` after a short ``asyncio.sleep`` (so concurrent callers really overlap),
counting the old passwords it evaluated; ``FakeStore`` holds instances and answers the reads a
use case makes before it queues anything. Anything else they are asked raises, so a test notices
when a use case goes further than it should.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from keyturn.core.errors import AccountNotFound, InstanceNotFound
from keyturn.core.model import EngineKind, Instance, Node, NodeAddress, Product
from keyturn.core.ports import EngineInfo
from keyturn.core.secrets import Secret


def fake_instance(
    instance_id: str = "crs-fake0001",
    *,
    tenant_id: str = "1300000001",
    product: Product = Product.ALIBABA_KVSTORE,
    admin: str = "kt_admin",
    allow_admin_reset: bool = False,
    engine: EngineKind = EngineKind.REDIS,
) -> Instance:
    """A one-node instance (Redis unless ``engine`` says otherwise) whose admin login is
    ``admin``."""
    address = NodeAddress(
        engine=engine,
        scheme="redis" if engine is EngineKind.REDIS else engine.value,
        host="127.0.0.1",
        port=6379,
        username=admin,
        password=Secret("admin-password"),
    )
    return Instance(
        id=instance_id,
        tenant_id=tenant_id,
        product=product,
        region="cn-hangzhou",
        nodes=(Node(instance_id=instance_id, ordinal=0, address=address),),
        allow_admin_reset=allow_admin_reset,
    )


@dataclass
class FakeEngine:
    """Accounts: name -> current password; ``superusers`` are reported so by ``probe``."""

    kind: EngineKind = EngineKind.REDIS
    passwords: dict[str, str] = field(default_factory=dict)
    superusers: set[str] = field(default_factory=set)
    delay: float = 0.001
    #: Old passwords ``password_matches`` was asked about, in order.
    evaluated: list[str] = field(default_factory=list)

    async def probe(self, node: Node, account: str | None = None) -> EngineInfo:
        await asyncio.sleep(self.delay)
        exists = None if account is None else account in self.passwords
        return EngineInfo(
            version="7.0.15",
            accounts=True,
            password_free=False if exists else None,
            account_exists=exists,
            superuser=None if not exists else account in self.superusers,
        )

    async def password_matches(self, node: Node, account: str, password: Secret) -> bool:
        self.evaluated.append(password.reveal())
        await asyncio.sleep(self.delay)
        if account not in self.passwords:
            raise AccountNotFound()
        return self.passwords[account] == password.reveal()

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the fake engine was not expected to {name}")


@dataclass
class FakeRegistry:
    driver: FakeEngine

    def engine(self, kind: EngineKind) -> FakeEngine:
        return self.driver


@dataclass
class FakeStore:
    instances: dict[str, Instance] = field(default_factory=dict)

    async def get_instance(self, tenant_id: str, instance_id: str) -> Instance:
        found = self.instances.get(instance_id)
        if found is None or found.tenant_id != tenant_id:
            raise InstanceNotFound()
        return found

    async def active_task(self, instance_id: str, account: str) -> int | None:
        return None

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the fake store was not expected to {name}")
