"""What the PostgreSQL and MySQL adapters share beyond their admin pool.

In both engines a change made on the primary replicates by itself, so their plans are the same
(``keyturn.engines.sql_plan``): discover the primary, write there, check everywhere. Both keep only
password verifiers, so whether a password is an account's current one is answered by one login
attempt. Each adapter creates and drops accounts its own way (on the primary; replicas follow).
An adapter subclasses ``SqlEngine``, sets ``engine_name`` and implements ``_login``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from keyturn.core.engine_ports import CredentialSnapshot
from keyturn.core.errors import VerificationFailed
from keyturn.core.model import Instance, Node
from keyturn.core.plans import Change, ChangePlan, Topology
from keyturn.core.secrets import Secret
from keyturn.engines import sql_plan
from keyturn.engines.admin_pool import AdminPool


class SqlEngine:
    engine_name = "SQL"
    _admins: AdminPool[Any]

    async def _login(self, node: Node, account: str, password: Secret) -> None:
        """One fresh login as ``account``; ``VerificationFailed`` if it is refused."""
        raise NotImplementedError

    async def _is_replica(self, node: Node) -> bool:
        """Whether ``node`` is a standby or replica (it is not written, only checked)."""
        raise NotImplementedError

    async def discover(self, instance: Instance) -> Topology:
        return await sql_plan.discover_primary(instance, self._is_replica)

    def plan(
        self, topology: Topology, change: Change, snapshots: Mapping[str, CredentialSnapshot]
    ) -> ChangePlan:
        return sql_plan.build_plan(self, topology, change, snapshots)  # type: ignore[arg-type]

    async def password_matches(self, node: Node, account: str, password: Secret) -> bool:
        # The engine keeps only verifiers: a login attempt is the one honest check. One
        # attempt, not verify's wait for a replica: this asks about the node as it is now.
        try:
            await self._login(node, account, password)
        except VerificationFailed:
            return False
        return True

    async def verify_logins(self, node: Node, account: str, passwords: Sequence[Secret]) -> None:
        for password in passwords:
            await self._login(node, account, password)

    def overlap_partner(self, account: str) -> str | None:
        return None

    async def forget(self, node: Node) -> None:
        await self._admins.forget(node)

    async def close(self) -> None:
        await self._admins.close()
