"""Which node is the Redis primary now, as the instance's sentinels see it.

A Sentinel deployment moves its primary: after a failover another node is the master, and the
old one comes back as a replica of it. So at the start of every task (and again when a step
fails, to learn whether the instance moved) every declared sentinel is asked
``SENTINEL GET-MASTER-ADDR-BY-NAME``, ``SENTINEL MASTER`` (for its ``config-epoch``) and
``SENTINEL REPLICAS`` for the master named in its URL. Sentinels that do not answer are skipped.
The answers are reconciled by ``agreed``: the master most sentinels name wins; a tie goes to the
answer with the highest configuration epoch (the most recent failover), and a tie there too is
a failover still spreading, which is retried (``EngineUnavailable``) rather than guessed.

The primary a sentinel names must be one of the instance's declared nodes: keyturn logs in to
it with a declared node's admin credential, and a sentinel that points elsewhere (another
deployment reusing the master name, a tampered sentinel) must not receive that credential or
the new password. Such an answer refuses the task (``EngineRejected``) before anything changes.
Replicas the sentinels know but the inventory does not are administered with the declared
primary's login, like the nodes a Redis Cluster reports. Imports: ``keyturn.core``,
``keyturn.engines`` and redis-py (through the engine's modules).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from keyturn.core.errors import EngineRejected, EngineUnavailable
from keyturn.core.model import Instance, NodeRole
from keyturn.core.plans import Topology
from keyturn.engines.redis_acl import pairs, text
from keyturn.engines.redis_admins import RedisAdmin, cmd

if TYPE_CHECKING:
    from keyturn.engines.redis import RedisEngine


@dataclass(frozen=True, slots=True)
class SentinelView:
    """One sentinel's answer: the master's and the replicas' ``host:port``."""

    sentinel: str
    master: str
    replicas: tuple[str, ...] = ()
    #: The sentinel's ``config-epoch`` for the master: it grows with every failover.
    epoch: int = 0


def agreed(views: Sequence[SentinelView]) -> SentinelView:
    """The answer to plan from: the master named by most sentinels, ties broken by the highest
    configuration epoch; ``EngineUnavailable`` (retried) while they still disagree evenly."""
    if not views:
        raise EngineUnavailable("no sentinel answered")
    votes = Counter(view.master for view in views)
    best = max(votes.values())
    leaders = [m for m, n in votes.items() if n == best]
    if len(leaders) > 1:
        epochs = {m: max(v.epoch for v in views if v.master == m) for m in leaders}
        top = max(epochs.values())
        leaders = [m for m in leaders if epochs[m] == top]
        if len(leaders) > 1:
            raise EngineUnavailable(
                "the sentinels disagree on the primary (" + ", ".join(sorted(leaders)) + ")"
            )
    chosen = [v for v in views if v.master == leaders[0]]
    # The replicas of the most recent answer for that master (they follow its failover).
    return max(chosen, key=lambda v: v.epoch)


def topology_of(instance: Instance, view: SentinelView, master_name: str) -> Topology:
    """The instance's nodes with the roles ``view`` gives them, primary first."""
    from keyturn.engines.redis_plan import clone, ordered

    known = {n.endpoint: n for n in instance.nodes}
    primary = known.pop(view.master, None)
    if primary is None:
        raise EngineRejected(
            f"the sentinels name {view.master} as the primary of {master_name!r}, "
            f"which is not a node of instance {instance.id}"
        )
    nodes = [replace(primary, role=NodeRole.PRIMARY, shard=view.master)]
    extra = max((n.ordinal for n in instance.nodes), default=0) + 1
    for endpoint in dict.fromkeys(view.replicas):
        if endpoint == view.master:
            continue
        declared = known.pop(endpoint, None)
        if declared is not None:
            nodes.append(replace(declared, role=NodeRole.REPLICA, shard=view.master))
        else:
            nodes.append(clone(primary, endpoint, extra, NodeRole.REPLICA, view.master))
            extra += 1
    # A declared node the sentinels do not list still holds the account: keep it.
    nodes += [replace(n, role=NodeRole.REPLICA, shard=view.master) for n in known.values()]
    return Topology(
        nodes=ordered(nodes),
        watchers=instance.sentinels,
        shape=f"sentinel master {master_name}",
    )


async def discover_from_sentinels(engine: RedisEngine, instance: Instance) -> Topology:
    """Ask every sentinel; plan from the answer they agree on."""
    views: list[SentinelView] = []
    failures: list[str] = []
    names = {s.address.database for s in instance.sentinels}
    for sentinel in instance.sentinels:
        name = sentinel.address.database

        async def ask(
            admin: RedisAdmin, name: str = name, at: str = sentinel.endpoint
        ) -> SentinelView:
            found = await cmd(admin.client, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
            if not found:
                raise EngineRejected(f"the sentinel does not watch a master named {name!r}")
            master = pairs(await cmd(admin.client, "SENTINEL", "MASTER", name))
            replicas = await cmd(admin.client, "SENTINEL", "REPLICAS", name)
            return SentinelView(
                sentinel=at,
                master=f"{text(found[0])}:{int(found[1])}",
                replicas=tuple(entry_endpoint(e) for e in replicas or []),
                epoch=int(text(master.get("config-epoch", "0")) or 0),
            )

        try:
            views.append(await engine.admins.run(sentinel, "SENTINEL MASTER", ask))
        except (EngineUnavailable, EngineRejected) as exc:
            failures.append(exc.message)
    if not views:
        raise EngineUnavailable("no sentinel answered: " + "; ".join(failures))
    return topology_of(instance, agreed(views), "/".join(sorted(names)))


def entry_endpoint(entry: object) -> str:
    """``host:port`` of one ``SENTINEL REPLICAS`` entry (a flat list or a dict)."""
    values = {text(k): text(v) for k, v in pairs(entry).items()}
    return f"{values.get('ip', '')}:{values.get('port', '')}"
