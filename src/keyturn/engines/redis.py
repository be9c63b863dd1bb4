"""The Redis engine adapter: reads, changes, restores and verifies account passwords.

Redis 6 and later are driven through ACL only: ``ACL GETUSER`` reads state as SHA-256 hashes,
``ACL SETUSER`` changes it, and the user is checked to exist first, because ``ACL SETUSER``
creates unknown users. ``CONFIG SET requirepass`` is not used there, since it silently disagrees
with ACL state. Older servers, found by ``INFO server``, only have ``requirepass``.
Every change is persisted (``keyturn.engines.redis_admins``, which also pools the admin
clients). A verification uses a fresh connection of its own (``redis_login``). Replicated
instances and sentinels have their own steps (``redis_replication``, ``redis_topology``,
``redis_sentinel``); the probe and the account list are ``redis_reads``; reply parsing and
error reduction live in ``redis_acl``. No command argument is logged or put into an error
message. This module imports only ``keyturn.core``, ``keyturn.engines`` and redis-py.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from keyturn.core.engine_ports import (
    AccountInfo,
    ApplyResult,
    CredentialSnapshot,
    EngineInfo,
    Session,
    SessionMark,
)
from keyturn.core.errors import (
    AccountExists,
    AccountNotFound,
    AccountsUnsupported,
    InternalError,
    UnsupportedFeature,
    VerificationFailed,
)
from keyturn.core.model import EngineKind, Instance, Node
from keyturn.core.plans import Change, ChangePlan, Topology
from keyturn.core.secrets import Secret
from keyturn.engines import redis_plan, redis_reads, redis_sessions
from keyturn.engines.admin_pool import pool_key
from keyturn.engines.base import DEFAULT_TIMEOUT, check_timeout
from keyturn.engines.probed_roles import ProbedAccounts, ProbedRoles
from keyturn.engines.redis_acl import (
    AclUser,
    account_rules,
    parse_version,
    restore_rules,
    sha256_hex,
)
from keyturn.engines.redis_admins import (
    RedisAdmin,
    RedisAdmins,
    apply_and_persist,
    cmd,
    config_get,
    getuser,
    persist,
)
from keyturn.engines.redis_login import DEFAULT_USER, fresh_login
from keyturn.engines.redis_replication import NodeState, node_state

log = logging.getLogger(__name__)


class RedisEngine:
    """The ``Engine`` for Redis. One instance serves every Redis node; ``timeout`` bounds each
    operation (connect included) in seconds."""

    kind: EngineKind = EngineKind.REDIS

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._timeout = check_timeout(timeout)
        self._admins = RedisAdmins(self._timeout)
        self._run = self._admins.run
        #: Each node's master ("" for a master) when a reset's probe last read its ROLE.
        self.probed: ProbedRoles[str] = ProbedRoles()
        #: What a reset's probe read of its account on each node, for the task's snapshot.
        self.accounts: ProbedAccounts[NodeState] = ProbedAccounts()

    @property
    def timeout(self) -> float:
        return self._timeout

    @property
    def admins(self) -> RedisAdmins:
        """The pooled admin clients (for this engine's plan steps)."""
        return self._admins

    # ------------------------------------------------------------------ Engine protocol

    async def probe(self, node: Node, account: str | None = None) -> EngineInfo:
        async def op(admin: RedisAdmin) -> EngineInfo:
            found = await redis_reads.probe(admin, node.address.endpoint, account)
            if account is not None and found.state is not None:
                # For the task's discover and snapshot that follow a reset's probe.
                self._remember_role(node, found.role)
                self.accounts.put((pool_key(node), account), found.state)
            return found.info

        return await self._run(node, "probe", op)

    async def list_accounts(self, node: Node) -> list[AccountInfo]:
        return await self._run(node, "ACL USERS", redis_reads.accounts)

    async def snapshot(self, node: Node, account: str) -> CredentialSnapshot:
        async def op(admin: RedisAdmin) -> CredentialSnapshot:
            if not admin.acl:
                self._check_legacy_account(node, account)
                current = await config_get(admin, "requirepass")
                return CredentialSnapshot(account=account, data={"requirepass": current})
            probed = self.accounts.take((pool_key(node), account))
            state = probed or await node_state(admin.client, account)
            user = self._required(node, state.user)
            data: dict[str, Any] = {
                "passwords": list(user.passwords),
                "nopass": user.nopass,
                "enabled": user.enabled,
            }
            if state.authenticates_as(account):
                # A replica's login to its primary (or a primary's, for after a failover) is
                # plaintext config: keep it (sealed at rest, like every snapshot) so a
                # rollback can put it back.
                data["masterauth"] = await config_get(admin, "masterauth")
            if state.staged_for(account):
                # Replicas log in to this node with the account: a change is staged here.
                data[redis_plan.STAGED] = True
            return CredentialSnapshot(account=account, data=data)

        return await self._run(node, "snapshot", op)

    async def set_password(self, node: Node, account: str, password: Secret) -> ApplyResult:
        async def op(admin: RedisAdmin) -> ApplyResult:
            if not admin.acl:
                self._check_legacy_account(node, account)
                await cmd(admin.client, "CONFIG", "SET", "requirepass", password.reveal())
                return await persist(node, admin)
            state = await node_state(admin.client, account)
            self._required(node, state.user)
            plain = password.reveal()
            staged = state.staged_for(account)
            # Replicas log in to this node as the account: add the new password beside the
            # old ones; ``settle`` drops the old ones once every replica has switched.
            rules = [f">{plain}", "on"] if staged else ["resetpass", f">{plain}", "on"]
            setuser = ("ACL", "SETUSER", account, *rules)
            if not state.authenticates_as(account):
                # The change and its save in one round trip.
                return await apply_and_persist(node, admin, setuser)
            # masterauth follows only an accepted SETUSER: never in the same pipeline.
            await cmd(admin.client, *setuser)
            masterauth = ("CONFIG", "SET", "masterauth", plain)
            return await apply_and_persist(node, admin, masterauth, config=True)

        return await self._run(node, "set password", op)

    async def add_password(self, node: Node, account: str, password: Secret) -> ApplyResult:
        """``password`` beside the user's current ones (``ACL SETUSER u >new``, no
        ``resetpass``): an overlap's first half. A replica logging in with the account
        switches its ``masterauth`` to it, which its primary accepts by then."""

        async def op(admin: RedisAdmin) -> ApplyResult:
            if not admin.acl:
                raise UnsupportedFeature(
                    f"Redis {admin.version} on {node.address.endpoint} holds one password only"
                )
            state = await node_state(admin.client, account)
            user = self._required(node, state.user)
            if user.nopass:
                raise UnsupportedFeature(
                    f"the account on {node.address.endpoint} is password-free: nothing to overlap"
                )
            plain = password.reveal()
            await cmd(admin.client, "ACL", "SETUSER", account, f">{plain}")
            if state.authenticates_as(account):
                await cmd(admin.client, "CONFIG", "SET", "masterauth", plain)
            return await persist(node, admin, config=state.authenticates_as(account))

        return await self._run(node, "add password", op)

    async def verify_added(
        self, node: Node, account: str, password: Secret, snapshot: CredentialSnapshot
    ) -> None:
        """After an ``ADD``: ``password`` logs in on a fresh connection, and the user still
        holds every password hash ``snapshot`` saw (so the previous ones log in too)."""
        endpoint = node.address.endpoint

        async def held(admin: RedisAdmin) -> None:
            user = await getuser(admin, account)
            if user is None:
                raise VerificationFailed(f"the account no longer exists on {endpoint}")
            before = snapshot.data.get("passwords")
            previous = {str(h) for h in before} if isinstance(before, list) else set()
            if sha256_hex(password) not in user.passwords or not previous <= set(user.passwords):
                raise VerificationFailed(
                    f"{endpoint} does not hold both the new and the previous passwords"
                )

        await self._run(node, "verify", held)
        await fresh_login(node.address, account, password, acl=True, timeout=self._timeout)

    async def set_password_free(self, node: Node, account: str) -> ApplyResult:
        async def op(admin: RedisAdmin) -> ApplyResult:
            if not admin.acl:
                self._check_legacy_account(node, account)
                await cmd(admin.client, "CONFIG", "SET", "requirepass", "")
            else:
                await self._existing_user(node, admin, account)
                return await apply_and_persist(
                    node, admin, ("ACL", "SETUSER", account, "nopass", "on")
                )
            return await persist(node, admin)

        return await self._run(node, "set password-free", op)

    async def restore(self, node: Node, snapshot: CredentialSnapshot) -> ApplyResult:
        account = snapshot.account

        async def op(admin: RedisAdmin) -> ApplyResult:
            if not admin.acl:
                self._check_legacy_account(node, account)
                value = snapshot.data.get("requirepass")
                if not isinstance(value, str):
                    raise InternalError("the credential snapshot is not one of Redis < 6")
                await cmd(admin.client, "CONFIG", "SET", "requirepass", value)
                return await persist(node, admin)
            rules = restore_rules(snapshot.data)
            await self._existing_user(node, admin, account)
            await cmd(admin.client, "ACL", "SETUSER", account, *rules)
            masterauth = snapshot.data.get("masterauth")
            if isinstance(masterauth, str):
                await cmd(admin.client, "CONFIG", "SET", "masterauth", masterauth)
            return await persist(node, admin, config=isinstance(masterauth, str))

        return await self._run(node, "restore", op)

    async def discover(self, instance: Instance) -> Topology:
        return await redis_plan.discover(self, instance)

    def plan(
        self, topology: Topology, change: Change, snapshots: Mapping[str, CredentialSnapshot]
    ) -> ChangePlan:
        return redis_plan.build_plan(self, topology, change, snapshots)

    async def verify(self, node: Node, account: str, password: Secret | None) -> None:
        endpoint = node.address.endpoint

        async def state(admin: RedisAdmin) -> bool:
            if not admin.acl:
                self._check_legacy_account(node, account)
                current = Secret(await config_get(admin, "requirepass"))
                ok = current == (password if password is not None else Secret(""))
            else:
                user = await getuser(admin, account)
                if user is None:
                    raise VerificationFailed(f"the account no longer exists on {endpoint}")
                if password is None:
                    ok = user.nopass
                else:
                    digest = sha256_hex(password)
                    ok = (
                        not user.nopass
                        and len(user.passwords) == 1
                        and hmac.compare_digest(user.passwords[0], digest)
                    )
            if not ok:
                if password is None:
                    raise VerificationFailed(f"{endpoint} still requires a password")
                raise VerificationFailed(f"{endpoint} does not hold exactly the new password")
            return admin.acl

        pooled = self._admins.pooled(node)
        if pooled is None:
            acl = await self._run(node, "verify", state)
            await fresh_login(node.address, account, password, acl=acl, timeout=self._timeout)
            return
        # The admin-side check and the fresh login are independent: run them at once. When both
        # fail, the admin side's error is raised: it says what is wrong ("still requires a
        # password"), where the login's says only that it failed (and which one finished first
        # must not decide the message).
        outcomes = await asyncio.gather(
            self._run(node, "verify", state),
            fresh_login(node.address, account, password, acl=pooled.acl, timeout=self._timeout),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def verify_logins(self, node: Node, account: str, passwords: Sequence[Secret]) -> None:
        pooled = self._admins.pooled(node)
        acl = pooled.acl if pooled is not None else True
        for password in passwords:
            await fresh_login(node.address, account, password, acl=acl, timeout=self._timeout)

    def overlap_partner(self, account: str) -> str | None:
        return None

    def prepare(self, node: Node, account: str, password: Secret) -> None:
        return None  # an ACL password's SHA-256 costs a microsecond: made at the change

    def _remember_role(self, node: Node, reply: Any) -> None:
        """Keep what a probe's ``ROLE`` said for the next ``discover``; a reply it cannot read
        is left for ``discover`` to ask again: the probe is not at stake."""
        master = redis_reads.master_of(reply)
        if master is not None:
            self.probed.put(pool_key(node), master)

    async def list_sessions(self, node: Node, account: str) -> list[Session]:
        return await self._run(
            node, "CLIENT LIST", lambda admin: redis_sessions.listed(admin, node, account)
        )

    async def session_mark(self, node: Node) -> SessionMark | None:
        return None  # every session's start time is known

    async def end_sessions(self, node: Node, account: str, ids: Sequence[str]) -> int:
        return await self._run(
            node, "CLIENT KILL", lambda admin: redis_sessions.ended(admin, account, ids)
        )

    async def password_matches(self, node: Node, account: str, password: Secret) -> bool:
        async def op(admin: RedisAdmin) -> bool:
            if not admin.acl:
                self._check_legacy_account(node, account)
                current = (await config_get(admin, "requirepass")).encode()
                return bool(current) and hmac.compare_digest(current, password.reveal().encode())
            user = await self._existing_user(node, admin, account)
            digest = sha256_hex(password)
            return not user.nopass and any(hmac.compare_digest(h, digest) for h in user.passwords)

        return await self._run(node, "check password", op)

    async def create_account(
        self, node: Node, account: str, password: Secret, *, read_only: bool
    ) -> ApplyResult:
        endpoint = node.address.endpoint

        async def op(admin: RedisAdmin) -> ApplyResult:
            if not admin.acl:
                raise AccountsUnsupported(f"Redis {admin.version} on {endpoint} has no ACL users")
            # ACL SETUSER creates or amends: check first so an existing user is never changed.
            if await getuser(admin, account) is not None:
                raise AccountExists(f"the account already exists on {endpoint}")
            channels = parse_version(admin.version) >= (6, 2)
            rules = account_rules(password, read_only=read_only, channels=channels)
            await cmd(admin.client, "ACL", "SETUSER", account, *rules)
            return await persist(node, admin)

        return await self._run(node, "create account", op)

    async def drop_account(self, node: Node, account: str) -> ApplyResult:
        async def op(admin: RedisAdmin) -> ApplyResult:
            if not admin.acl or await getuser(admin, account) is None:
                return ApplyResult(persisted=True, note="nothing to drop")
            await cmd(admin.client, "ACL", "DELUSER", account)
            return await persist(node, admin)

        return await self._run(node, "drop account", op)

    async def forget(self, node: Node) -> None:
        await self._admins.forget(node)

    async def close(self) -> None:
        await self._admins.close()

    # ------------------------------------------------------------------ internals

    async def _existing_user(self, node: Node, admin: RedisAdmin, account: str) -> AclUser:
        return self._required(node, await getuser(admin, account))

    @staticmethod
    def _required(node: Node, user: AclUser | None) -> AclUser:
        if user is None:
            raise AccountNotFound(f"the account does not exist on {node.address.endpoint}")
        return user

    @staticmethod
    def _check_legacy_account(node: Node, account: str) -> None:
        if account != DEFAULT_USER:
            raise AccountNotFound(
                f"Redis before 6 on {node.address.endpoint} has no account but {DEFAULT_USER}"
            )
