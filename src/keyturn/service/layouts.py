"""What instance listings say about an instance's shape: how many shards, how many replicas.

The vendors' describe calls report it (Tencent ``RedisShardNum`` / ``RedisReplicasNum``,
Alibaba ``ShardCount``). An instance of declared nodes is one shard whose other nodes are its
replicas: the store says so, and a listing asks no engine. A Redis Cluster's declared nodes are
only seeds, so its shape is read from the cluster itself: one discovery (``CLUSTER NODES``
from the first seed that answers) per cluster being listed, at most ``CONCURRENCY`` at once,
each bounded by the engine's timeout. A cluster that cannot be read now has no known shape
(None): listings then leave the counts out rather than report wrong ones.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from keyturn.core.engine_ports import EngineRegistry
from keyturn.core.errors import DomainError
from keyturn.core.model import Instance
from keyturn.core.plans import Topology

log = logging.getLogger(__name__)

#: Clusters read at once for one listing.
CONCURRENCY = 16


@dataclass(frozen=True, slots=True)
class Layout:
    """An instance's shards and the replicas of each (the fewest any shard has)."""

    shards: int
    replicas: int

    @classmethod
    def of(cls, topology: Topology) -> Layout:
        shards = topology.shards()
        fewest = min((len(members) - 1 for members in shards.values()), default=0)
        return cls(shards=len(shards), replicas=fewest)


def declared(instance: Instance) -> Layout:
    """The shape the inventory declares: one shard, the other nodes its replicas."""
    return Layout(shards=1, replicas=max(len(instance.nodes) - 1, 0))


async def layouts(
    engines: EngineRegistry, instances: Sequence[Instance]
) -> dict[str, Layout | None]:
    """Each instance's layout by id; a cluster's is read live (None if it cannot be)."""
    slots = asyncio.Semaphore(CONCURRENCY)

    async def read(instance: Instance) -> Layout | None:
        if not instance.cluster:
            return declared(instance)
        async with slots:
            try:
                topology = await engines.engine(instance.engine).discover(instance)
            except DomainError as exc:
                log.warning(
                    "the shards of cluster %s could not be read: %s", instance.id, exc.message
                )
                return None
        return Layout.of(topology)

    found = await asyncio.gather(*(read(instance) for instance in instances))
    return {instance.id: layout for instance, layout in zip(instances, found, strict=True)}
