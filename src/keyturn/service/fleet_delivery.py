"""What follows a fleet target's change: where its new password goes and what the node lets go.

``PasswordSink`` is the seam to the managed secrets of issue 16: a sink stores a rotated
password and answers the reference it is kept under (None when the target has no secret), and
the target row then forgets the password. Without a sink the password stays sealed on the
target row for ``keyturn rotate status --show-passwords``. ``Release`` closes the pooled admin
sessions of an instance whose target ended, so a job over 10,000 instances does not keep
10,000 admin connections (and their memory) open; the next call to the instance logs in again.
"""

from __future__ import annotations

from typing import Protocol

from keyturn.core.errors import DomainError
from keyturn.core.ports import EngineRegistry, InstanceRepo
from keyturn.core.secrets import Secret


class PasswordSink(Protocol):
    """Where a rotated password is delivered (issue 16's secrets); the reference it is kept
    under, or None when the target has no secret to deliver to."""

    async def deliver(
        self, tenant_id: str, instance_id: str, account: str, password: Secret
    ) -> str | None: ...


class Release:
    """Close the pooled admin sessions of an instance whose target ended."""

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
