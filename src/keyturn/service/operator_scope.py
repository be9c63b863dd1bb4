"""What the operator's use cases (``keyturn.service.operator``) work with besides the store: the
``Scope`` of the admin token calling, the read ports of the audit log and of instance search
(implemented by ``keyturn.store``; the service only knows these protocols), and an instance's
health as a live discovery found it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from keyturn.core.audit import AuditEvent
from keyturn.core.errors import AccessDenied
from keyturn.core.model import Instance
from keyturn.core.store_ports import Page
from keyturn.service.context import Caller


class InstanceSearch(Protocol):
    """Instances whose id or name holds a text (``keyturn.store.instance_search``)."""

    async def search_instances(
        self, tenant_id: str | None, *, text: str, product: str | None, page: Page
    ) -> tuple[list[Instance], int]: ...


class AuditRecordView(Protocol):
    @property
    def seq(self) -> int: ...

    @property
    def event(self) -> AuditEvent: ...

    @property
    def hash(self) -> str: ...


class ChainView(Protocol):
    @property
    def records(self) -> int: ...

    @property
    def head_hash(self) -> str: ...

    @property
    def bad_seq(self) -> int | None: ...

    @property
    def problem(self) -> str: ...

    @property
    def intact(self) -> bool: ...


class AuditReader(Protocol):
    """The audit log's read side (``keyturn.store.audit.SqlAuditLog``)."""

    async def search(
        self,
        *,
        tenant: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        request_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> Sequence[AuditRecordView]: ...

    async def verify(self) -> ChainView: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Scope:
    """Who calls: an admin token (its id, never the token) and the tenant it is limited to."""

    tenant_id: str | None
    token_id: str
    request_id: str
    source_ip: str = ""
    user_agent: str = ""

    @property
    def all_tenants(self) -> bool:
        return self.tenant_id is None

    def sees(self, tenant_id: str) -> bool:
        return self.tenant_id is None or self.tenant_id == tenant_id

    def caller(self, tenant_id: str) -> Caller:
        """The service caller acting for ``tenant_id``: its administrator (no policy)."""
        return Caller(
            tenant_id=tenant_id,
            key_id=self.token_id,
            request_id=self.request_id,
            source_ip=self.source_ip,
            user_agent=self.user_agent,
        )

    def require_all(self, what: str) -> None:
        if not self.all_tenants:
            raise AccessDenied(f"{what} needs an admin token of every tenant")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeHealth:
    endpoint: str
    role: str
    shard: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceHealth:
    """A live discovery of the instance (bounded by a short timeout): its nodes and roles, or
    why it could not be read."""

    status: str  # "ok" or "unavailable"
    nodes: tuple[NodeHealth, ...]
    shape: str = ""
    detail: str = ""
