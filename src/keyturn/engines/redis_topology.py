"""The multi-node steps of a Redis password change: finishing a staged change on a replicated
instance and keeping its sentinels in step.

``settle`` runs once every node was applied: the primary keeps only the new password, its
replication links are cut, and every replica must log in again with its new ``masterauth``
(a node listed as a replica that does not replicate from this primary yet, an old primary back
after a Sentinel failover, is not waited for: the sentinel will point it here, and it then logs
in with the ``masterauth`` it already got).
``update_watchers`` / ``restore_watchers`` hand the sentinels the new (or, on rollback, the
previous) ``auth-pass`` when they log in with the account being changed, cut their links and
prove they log in again. The replicas' ``masteruser`` (``default`` when unset, or when there
is no replica) is taken as the account sentinels log in with. It imports only
``keyturn.core``, ``keyturn.engines`` and redis-py.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from keyturn.core.engine_ports import CredentialSnapshot
from keyturn.core.errors import EngineRejected
from keyturn.core.model import Node
from keyturn.core.secrets import Secret
from keyturn.engines.redis_admins import RedisAdmin, RedisAdmins, cmd, persist
from keyturn.engines.redis_login import DEFAULT_USER
from keyturn.engines.redis_replication import node_state, wait_link_up
from keyturn.engines.redis_sentinel import drop_sentinel_links, set_auth_pass, wait_logged_in

#: How long a replica or sentinel may take to log in again after its link was cut; both retry
#: about once a second.
RELINK_SECONDS = 10.0


async def settle(
    admins: RedisAdmins, nodes: Sequence[Node], account: str, password: Secret | None
) -> None:
    """Finish a staged change: the primary drops the old passwords, replicas log in again."""
    primary, replicas = nodes[0], nodes[1:]

    async def finish(admin: RedisAdmin) -> None:
        plain = password.reveal() if password is not None else None
        rules = ["resetpass", f">{plain}", "on"] if plain is not None else ["nopass", "on"]
        await cmd(admin.client, "ACL", "SETUSER", account, *rules)
        await persist(primary, admin)
        await cmd(admin.client, "CLIENT", "KILL", "TYPE", "replica")

    await admins.run(primary, "settle", finish)
    master = (primary.address.host, primary.address.port)
    for replica in replicas:

        async def relinked(admin: RedisAdmin, endpoint: str = replica.address.endpoint) -> None:
            await wait_link_up(admin.client, endpoint, RELINK_SECONDS, master)

        await admins.run(replica, "replication check", relinked, budget=RELINK_SECONDS)


async def update_watchers(
    admins: RedisAdmins,
    watchers: Sequence[Node],
    nodes: Sequence[Node],
    account: str,
    password: Secret | None,
) -> None:
    if watchers and account == await _watched_account(admins, nodes):
        await _switch_sentinels(admins, watchers, nodes, password.reveal() if password else "")


async def restore_watchers(
    admins: RedisAdmins,
    watchers: Sequence[Node],
    nodes: Sequence[Node],
    account: str,
    snapshots: Mapping[str, CredentialSnapshot],
) -> None:
    if not watchers or account != await _watched_account(admins, nodes):
        return
    # The previous auth-pass is the replicas' previous masterauth, or keyturn's own previous
    # admin password when keyturn logs in as the account.
    known = [s.data.get("masterauth") for s in snapshots.values()]
    known += [
        n.address.password.reveal()
        for n in nodes
        if n.address.username == account and n.address.password is not None
    ]
    previous = next((k for k in known if isinstance(k, str)), None)
    if previous is None:
        raise EngineRejected("the sentinels' previous auth-pass is not known to keyturn")
    await _switch_sentinels(admins, watchers, nodes, previous)


async def _watched_account(admins: RedisAdmins, nodes: Sequence[Node]) -> str:
    async def master_user(admin: RedisAdmin) -> str:
        return (await node_state(admin.client, DEFAULT_USER)).master_user

    if len(nodes) < 2:
        return DEFAULT_USER
    return await admins.run(nodes[1], "replication state", master_user)


async def _switch_sentinels(
    admins: RedisAdmins, watchers: Sequence[Node], nodes: Sequence[Node], password: str
) -> None:
    """Set every sentinel's auth-pass, cut their links, prove they log in again."""
    for watcher in watchers:

        async def set_pass(admin: RedisAdmin, master: str = watcher.address.database) -> None:
            await set_auth_pass(admin.client, master, password)

        await admins.run(watcher, "sentinel auth-pass", set_pass)
    cut = time.monotonic()
    for node in nodes:

        async def drop(admin: RedisAdmin) -> None:
            await drop_sentinel_links(admin.client)

        await admins.run(node, "drop sentinel links", drop)
    for watcher in watchers:

        async def check(admin: RedisAdmin, watched: Node = watcher) -> None:
            master, endpoint = watched.address.database, watched.address.endpoint
            await wait_logged_in(admin.client, master, cut, endpoint, RELINK_SECONDS)

        await admins.run(watcher, "sentinel check", check, budget=RELINK_SECONDS)
