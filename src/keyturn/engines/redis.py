"""The Redis engine adapter: reads, changes, restores and verifies account passwords.

Redis 6 and later are driven through ACL only: ``ACL GETUSER`` reads state as SHA-256 hashes,
``ACL SETUSER`` changes it, and the user is checked to exist first, because ``ACL SETUSER``
creates unknown users. ``CONFIG SET requirepass`` is not used there, since it silently disagrees
with ACL state. Older servers, found by ``INFO server``, only have ``requirepass``.
Every change is persisted, with ``ACL SAVE`` when the server has an ``aclfile`` and with
``CONFIG REWRITE`` otherwise. A failed save is reported in the ``ApplyResult``, not raised.
Admin clients are pooled per node, speak RESP2 and skip ``CLIENT SETINFO``. A verification
uses a fresh connection of its own. Arguments travel as separate RESP arguments, never as text
built from strings. No command argument is logged or put into an error message. Reply parsing
and error reduction live in ``keyturn.engines.redis_acl``. This module imports only
``keyturn.core``, ``keyturn.engines`` and redis-py.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ResponseError

from keyturn.core.errors import (
    AccountExists,
    AccountNotFound,
    AccountsUnsupported,
    EngineRejected,
    EngineUnavailable,
    InternalError,
    VerificationFailed,
)
from keyturn.core.model import EngineKind, Node, NodeAddress
from keyturn.core.ports import AccountInfo, ApplyResult, CredentialSnapshot, EngineInfo
from keyturn.core.secrets import Secret
from keyturn.engines.base import DEFAULT_TIMEOUT, check_timeout, close_quietly, engine_call
from keyturn.engines.redis_acl import (
    AclUser,
    account_rules,
    classify,
    pairs,
    parse_version,
    persist_failure,
    restore_rules,
    sha256_hex,
    text,
)
from keyturn.engines.redis_login import DEFAULT_USER, auth_args, fresh_login
from keyturn.engines.redis_replication import node_state, wait_link_up
from keyturn.engines.redis_sentinel import drop_sentinel_links, set_auth_pass, wait_logged_in

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a replica may take to log in to its primary again after a staged change.
REPLICA_RELINK_SECONDS = 10.0


async def _cmd(client: Redis, *args: str) -> Any:
    """One command, its arguments sent as separate RESP bulk strings."""
    execute: Callable[..., Awaitable[Any]] = client.execute_command
    return await execute(*args)


async def _server_version(client: Redis, endpoint: str) -> str:
    """``redis_version`` from ``INFO server``: the first command of every admin login."""
    return _version_of(await _cmd(client, "INFO", "server"), endpoint)


def _version_of(reply: Any, endpoint: str) -> str:
    info = pairs(reply)
    version = text(info.get("redis_version", ""))
    if not parse_version(version):
        raise EngineRejected(f"{endpoint} did not report a Redis version")
    return version


@dataclass(slots=True)
class _Admin:
    """A pooled admin client and what keyturn learnt when it logged in."""

    client: Redis
    username: str
    password: Secret | None
    version: str
    #: ``CONFIG GET aclfile``, read once: the setting cannot change while the server runs.
    aclfile: str | None = None

    @property
    def acl(self) -> bool:
        return parse_version(self.version) >= (6,)


def _candidates(node: Node) -> list[Secret | None]:
    """Admin passwords to try in order: the registered one, then the pending one."""
    found: list[Secret | None] = [node.address.password]
    if node.pending_password is not None and node.pending_password != node.address.password:
        found.append(node.pending_password)
    return found


async def _close(client: Redis) -> None:
    await close_quietly(client.aclose(), "a redis client")


class RedisEngine:
    """The ``Engine`` for Redis. One instance serves every Redis node; ``timeout`` bounds each
    operation (connect included) in seconds."""

    kind: EngineKind = EngineKind.REDIS

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._timeout = check_timeout(timeout)
        self._pool: dict[str, _Admin] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def timeout(self) -> float:
        return self._timeout

    # ------------------------------------------------------------------ Engine protocol

    async def probe(self, node: Node, account: str | None = None) -> EngineInfo:
        async def op(admin: _Admin) -> EngineInfo:
            # Always a round trip, even on a pooled client: a probe is a health check.
            if account is not None and admin.acl:
                # One round trip for both: the probe is on every reset's request path.
                pipe = admin.client.pipeline(transaction=False)
                pipe.execute_command("INFO", "server")
                pipe.execute_command("ACL", "GETUSER", account)
                info, reply = await pipe.execute()
                admin.version = _version_of(info, node.address.endpoint)
                user = None if reply is None else AclUser.parse(reply)
                free = None if user is None else user.nopass
                return EngineInfo(
                    version=admin.version,
                    accounts=True,
                    password_free=free,
                    account_exists=user is not None,
                )
            admin.version = await _server_version(admin.client, node.address.endpoint)
            free = None if account is None else await self._password_free(admin, account)
            exists = None if account is None else free is not None
            return EngineInfo(
                version=admin.version, accounts=admin.acl, password_free=free, account_exists=exists
            )

        return await self._run(node, "probe", op)

    async def list_accounts(self, node: Node) -> list[AccountInfo]:
        async def op(admin: _Admin) -> list[AccountInfo]:
            if not admin.acl:
                free = await self._config_get(admin, "requirepass") == ""
                return [AccountInfo(name=DEFAULT_USER, enabled=True, password_free=free)]
            found: list[AccountInfo] = []
            for raw in await _cmd(admin.client, "ACL", "USERS") or []:
                name = text(raw)
                user = await self._getuser(admin, name)
                if user is not None:
                    found.append(
                        AccountInfo(
                            name=name,
                            enabled=user.enabled,
                            password_free=user.nopass,
                            privilege=user.privilege(),
                        )
                    )
            return found

        return await self._run(node, "ACL USERS", op)

    async def snapshot(self, node: Node, account: str) -> CredentialSnapshot:
        async def op(admin: _Admin) -> CredentialSnapshot:
            if not admin.acl:
                self._check_legacy_account(node, account)
                current = await self._config_get(admin, "requirepass")
                return CredentialSnapshot(account=account, data={"requirepass": current})
            state = await node_state(admin.client, account)
            user = self._required(node, state.user)
            data: dict[str, Any] = {
                "passwords": list(user.passwords),
                "nopass": user.nopass,
                "enabled": user.enabled,
            }
            if state.authenticates_as(account):
                # The replica's login to its primary is plaintext config: keep it (sealed at
                # rest, like every snapshot) so a rollback can put it back.
                data["masterauth"] = await self._config_get(admin, "masterauth")
            return CredentialSnapshot(account=account, data=data)

        return await self._run(node, "snapshot", op)

    async def set_password(self, node: Node, account: str, password: Secret) -> ApplyResult:
        async def op(admin: _Admin) -> ApplyResult:
            if not admin.acl:
                self._check_legacy_account(node, account)
                await _cmd(admin.client, "CONFIG", "SET", "requirepass", password.reveal())
                return await self._persist(node, admin)
            state = await node_state(admin.client, account)
            self._required(node, state.user)
            plain = password.reveal()
            staged = state.staged_for(account)
            # Replicas log in to this node as the account: add the new password beside the
            # old ones; ``settle`` drops the old ones once every replica has switched.
            rules = [f">{plain}", "on"] if staged else ["resetpass", f">{plain}", "on"]
            await _cmd(admin.client, "ACL", "SETUSER", account, *rules)
            if state.authenticates_as(account):
                await _cmd(admin.client, "CONFIG", "SET", "masterauth", plain)
            result = await self._persist(node, admin, config=state.authenticates_as(account))
            return replace(result, settle=staged)

        return await self._run(node, "set password", op)

    async def set_password_free(self, node: Node, account: str) -> ApplyResult:
        async def op(admin: _Admin) -> ApplyResult:
            if not admin.acl:
                self._check_legacy_account(node, account)
                await _cmd(admin.client, "CONFIG", "SET", "requirepass", "")
            else:
                await self._existing_user(node, admin, account)
                await _cmd(admin.client, "ACL", "SETUSER", account, "nopass", "on")
            return await self._persist(node, admin)

        return await self._run(node, "set password-free", op)

    async def restore(self, node: Node, snapshot: CredentialSnapshot) -> ApplyResult:
        account = snapshot.account

        async def op(admin: _Admin) -> ApplyResult:
            if not admin.acl:
                self._check_legacy_account(node, account)
                value = snapshot.data.get("requirepass")
                if not isinstance(value, str):
                    raise InternalError("the credential snapshot is not one of Redis < 6")
                await _cmd(admin.client, "CONFIG", "SET", "requirepass", value)
                return await self._persist(node, admin)
            rules = restore_rules(snapshot.data)
            await self._existing_user(node, admin, account)
            await _cmd(admin.client, "ACL", "SETUSER", account, *rules)
            masterauth = snapshot.data.get("masterauth")
            if isinstance(masterauth, str):
                await _cmd(admin.client, "CONFIG", "SET", "masterauth", masterauth)
            return await self._persist(node, admin, config=isinstance(masterauth, str))

        return await self._run(node, "restore", op)

    async def settle(self, nodes: Sequence[Node], account: str, password: Secret | None) -> None:
        """Finish a staged change: the primary keeps only the new password, its replication
        links are cut, and every replica must log in to it again with its new ``masterauth``."""
        primary, replicas = nodes[0], nodes[1:]

        async def finish(admin: _Admin) -> None:
            plain = password.reveal() if password is not None else None
            rules = ["resetpass", f">{plain}", "on"] if plain is not None else ["nopass", "on"]
            await _cmd(admin.client, "ACL", "SETUSER", account, *rules)
            await self._persist(primary, admin)
            await _cmd(admin.client, "CLIENT", "KILL", "TYPE", "replica")

        await self._run(primary, "settle", finish)
        for replica in replicas:

            async def relinked(admin: _Admin, endpoint: str = replica.address.endpoint) -> None:
                await wait_link_up(admin.client, endpoint, REPLICA_RELINK_SECONDS)

            await self._run(replica, "replication check", relinked, budget=REPLICA_RELINK_SECONDS)

    async def update_watchers(
        self,
        watchers: Sequence[Node],
        nodes: Sequence[Node],
        account: str,
        password: Secret | None,
    ) -> None:
        if not watchers or account != await self._watched_account(nodes):
            return
        await self._switch_sentinels(watchers, nodes, password.reveal() if password else "")

    async def restore_watchers(
        self,
        watchers: Sequence[Node],
        nodes: Sequence[Node],
        account: str,
        snapshots: Mapping[int, CredentialSnapshot],
    ) -> None:
        if not watchers or account != await self._watched_account(nodes):
            return
        # The previous auth-pass is the replicas' previous masterauth, or keyturn's own
        # previous admin password when keyturn logs in as the account.
        known = [s.data.get("masterauth") for s in snapshots.values()]
        known += [
            n.address.password.reveal()
            for n in nodes
            if n.address.username == account and n.address.password is not None
        ]
        previous = next((k for k in known if isinstance(k, str)), None)
        if previous is None:
            raise EngineRejected("the sentinels' previous auth-pass is not known to keyturn")
        await self._switch_sentinels(watchers, nodes, previous)

    async def verify(self, node: Node, account: str, password: Secret | None) -> None:
        endpoint = node.address.endpoint

        async def state(admin: _Admin) -> bool:
            if not admin.acl:
                self._check_legacy_account(node, account)
                current = Secret(await self._config_get(admin, "requirepass"))
                ok = current == (password if password is not None else Secret(""))
            else:
                user = await self._getuser(admin, account)
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

        pooled = self._pool.get(node.key)
        if pooled is None:
            acl = await self._run(node, "verify", state)
            await fresh_login(node.address, account, password, acl=acl, timeout=self._timeout)
            return
        # The admin-side check and the fresh login are independent: run them at once.
        await asyncio.gather(
            self._run(node, "verify", state),
            fresh_login(node.address, account, password, acl=pooled.acl, timeout=self._timeout),
        )

    async def password_matches(self, node: Node, account: str, password: Secret) -> bool:
        async def op(admin: _Admin) -> bool:
            if not admin.acl:
                self._check_legacy_account(node, account)
                current = (await self._config_get(admin, "requirepass")).encode()
                return bool(current) and hmac.compare_digest(current, password.reveal().encode())
            user = await self._existing_user(node, admin, account)
            digest = sha256_hex(password)
            return not user.nopass and any(hmac.compare_digest(h, digest) for h in user.passwords)

        return await self._run(node, "check password", op)

    async def create_account(
        self, node: Node, account: str, password: Secret, *, read_only: bool
    ) -> ApplyResult:
        endpoint = node.address.endpoint

        async def op(admin: _Admin) -> ApplyResult:
            if not admin.acl:
                raise AccountsUnsupported(f"Redis {admin.version} on {endpoint} has no ACL users")
            # ACL SETUSER creates or amends: check first so an existing user is never changed.
            if await self._getuser(admin, account) is not None:
                raise AccountExists(f"the account already exists on {endpoint}")
            channels = parse_version(admin.version) >= (6, 2)
            rules = account_rules(password, read_only=read_only, channels=channels)
            await _cmd(admin.client, "ACL", "SETUSER", account, *rules)
            return await self._persist(node, admin)

        return await self._run(node, "create account", op)

    async def drop_account(self, node: Node, account: str) -> ApplyResult:
        async def op(admin: _Admin) -> ApplyResult:
            if not admin.acl or await self._getuser(admin, account) is None:
                return ApplyResult(persisted=True, note="nothing to drop")
            await _cmd(admin.client, "ACL", "DELUSER", account)
            return await self._persist(node, admin)

        return await self._run(node, "drop account", op)

    async def forget(self, node: Node) -> None:
        await self._drop(node.key)

    async def close(self) -> None:
        for key in list(self._pool):
            await self._drop(key)
        self._locks.clear()

    # ------------------------------------------------------------------ internals

    async def _run(
        self,
        node: Node,
        action: str,
        op: Callable[[_Admin], Awaitable[T]],
        *,
        budget: float | None = None,
    ) -> T:
        """Run ``op`` on the node's admin client, bounded (by the engine timeout plus
        ``budget`` seconds for operations that wait) and with errors translated."""
        endpoint = node.address.endpoint
        timeout = self._timeout + (budget or 0.0)
        try:
            async with engine_call(endpoint, action, timeout=timeout, classify=classify):
                admin = await self._admin(node)
                try:
                    return await op(admin)
                except AuthenticationError:
                    # A new pooled connection could not log in: the admin credential changed
                    # under the pool (keyturn reset its own account). Rebuild once.
                    if node.pending_password is None:
                        raise
                    await self._drop(node.key)
                    return await op(await self._admin(node))
        except EngineUnavailable:
            await self._drop(node.key)
            raise

    async def _admin(self, node: Node) -> _Admin:
        """The pooled admin client for ``node``, built (and its version read) on first use."""
        lock = self._locks.setdefault(node.key, asyncio.Lock())
        async with lock:
            current = self._pool.get(node.key)
            candidates = _candidates(node)
            if current is not None:
                if current.username == node.address.username and current.password in candidates:
                    return current
                await self._drop(node.key)
            for i, password in enumerate(candidates):
                client = self._client(node.address, auth_args(node.address.username, password))
                try:
                    version = await _server_version(client, node.address.endpoint)
                except AuthenticationError:
                    await _close(client)
                    if i + 1 < len(candidates):
                        log.info("admin login to %s: trying the pending credential", node.key)
                        continue
                    raise
                except BaseException:
                    await _close(client)
                    raise
                admin = _Admin(client, node.address.username, password, version)
                self._pool[node.key] = admin
                log.debug("admin client for %s ready (Redis %s)", node.key, version)
                return admin
            raise AssertionError("unreachable: there is always one candidate")

    def _client(
        self, address: NodeAddress, login: tuple[str | None, str | None], *, single: bool = False
    ) -> Redis:
        """A client that logs in with ``login`` (see ``auth_args``) on each new connection."""
        return Redis(
            host=address.host,
            port=address.port,
            username=login[0],
            password=login[1],
            protocol=2,
            driver_info=None,  # no CLIENT SETINFO; same as lib_name=None, lib_version=None
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 0),
            ssl=address.tls,
            single_connection_client=single,
        )

    async def _drop(self, key: str) -> None:
        admin = self._pool.pop(key, None)
        if admin is not None:
            await _close(admin.client)

    async def _getuser(self, admin: _Admin, account: str) -> AclUser | None:
        reply = await _cmd(admin.client, "ACL", "GETUSER", account)
        return None if reply is None else AclUser.parse(reply)

    async def _watched_account(self, nodes: Sequence[Node]) -> str:
        """The account sentinels (like the replicas) log in with: the replicas' masteruser,
        ``default`` when there is no replica."""

        async def master_user(admin: _Admin) -> str:
            return (await node_state(admin.client, DEFAULT_USER)).master_user

        if len(nodes) < 2:
            return DEFAULT_USER
        return await self._run(nodes[1], "replication state", master_user)

    async def _switch_sentinels(
        self, watchers: Sequence[Node], nodes: Sequence[Node], password: str
    ) -> None:
        """Set every sentinel's auth-pass, cut their links, prove they log in again."""
        for watcher in watchers:

            async def set_pass(admin: _Admin, master: str = watcher.address.database) -> None:
                await set_auth_pass(admin.client, master, password)

            await self._run(watcher, "sentinel auth-pass", set_pass)
        cut = time.monotonic()
        for node in nodes:

            async def drop(admin: _Admin) -> None:
                await drop_sentinel_links(admin.client)

            await self._run(node, "drop sentinel links", drop)
        for watcher in watchers:

            async def check(admin: _Admin, watched: Node = watcher) -> None:
                await wait_logged_in(
                    admin.client,
                    watched.address.database,
                    cut,
                    watched.address.endpoint,
                    REPLICA_RELINK_SECONDS,
                )

            await self._run(watcher, "sentinel check", check, budget=REPLICA_RELINK_SECONDS)

    async def _existing_user(self, node: Node, admin: _Admin, account: str) -> AclUser:
        return self._required(node, await self._getuser(admin, account))

    @staticmethod
    def _required(node: Node, user: AclUser | None) -> AclUser:
        if user is None:
            raise AccountNotFound(f"the account does not exist on {node.address.endpoint}")
        return user

    async def _password_free(self, admin: _Admin, account: str) -> bool | None:
        """Whether ``account`` needs no password; None if the account does not exist."""
        if not admin.acl:
            if account != DEFAULT_USER:
                return None
            return await self._config_get(admin, "requirepass") == ""
        user = await self._getuser(admin, account)
        return None if user is None else user.nopass

    async def _config_get(self, admin: _Admin, name: str) -> str:
        return text(pairs(await _cmd(admin.client, "CONFIG", "GET", name)).get(name, ""))

    @staticmethod
    def _check_legacy_account(node: Node, account: str) -> None:
        if account != DEFAULT_USER:
            raise AccountNotFound(
                f"Redis before 6 on {node.address.endpoint} has no account but {DEFAULT_USER}"
            )

    async def _persist(self, node: Node, admin: _Admin, *, config: bool = False) -> ApplyResult:
        """Save the change: ``ACL SAVE`` with an aclfile, else ``CONFIG REWRITE``; both when
        ``config`` says a setting (``masterauth``) changed too."""
        command: tuple[str, ...] = ("CONFIG", "GET", "aclfile")
        try:
            if admin.acl and admin.aclfile is None:
                admin.aclfile = await self._config_get(admin, "aclfile")
            if admin.acl and admin.aclfile:
                command = ("ACL", "SAVE")
                await _cmd(admin.client, *command)
            if config or not (admin.acl and admin.aclfile):
                command = ("CONFIG", "REWRITE")
                await _cmd(admin.client, *command)
        except ResponseError as exc:
            reason = persist_failure(" ".join(command), exc)
            log.warning("credential change on %s not persisted: %s", node.key, reason)
            return ApplyResult(persisted=False, note=f"not persisted: {reason}")
        return ApplyResult(persisted=True)
