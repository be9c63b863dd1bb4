"""Redis Cluster through the official SDKs: a real cluster of three primaries and three replicas
(redis-server 7), registered by one or two seed nodes with ``cluster = true``, administered by
keyturn as a dedicated admin user that every node has (``kt_admin``), so ``default`` — the
instance password, and the user the replicas log in to their primaries with — is not keyturn's
own login and no instance opts in to ``allow_admin_reset``.

Tencent ``ResetPassword`` then ``DescribeTaskInfo`` until ``succeed``: every node accepts the
new password and refuses the old one, the change survives a restart of a primary and of a
replica (``CONFIG REWRITE``), and every shard still replicates. A node added to the cluster after
registration is changed at the next reset; a ``CLUSTER FAILOVER`` between two resets is followed
(the new primary is written first, the former primary still replicates from it). Tencent
``DescribeInstances`` reports the cluster's type and shards, ``DescribeInstanceAccount`` its
accounts. Alibaba ``CreateAccount`` makes an ACL user on every node, ``ResetAccountPassword``
changes it on every node, and ``DescribeInstanceAttribute`` / ``DescribeInstances`` report the
cluster architecture and its shards.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from tencentcloud.redis.v20180412 import models

from keyturn.core.model import Product
from keyturn.core.tasks import Task
from tests.support.alibaba_sdk import KvstoreSdk
from tests.support.keyturn_server import TENANT, KeyturnServer
from tests.support.logins import can_login
from tests.support.passwords import new_instance_id, new_password
from tests.support.redis_cluster_nodes import RedisClusterNodes
from tests.support.sdk import redis_sdk, reset, wait_task

pytestmark = pytest.mark.engine


def register(
    keyturn: KeyturnServer,
    cluster: RedisClusterNodes,
    product: Product = Product.TENCENT_REDIS,
) -> str:
    """The cluster by two seeds (a replica and a primary), as keyturn's admin user."""
    if product is Product.TENCENT_REDIS:
        instance_id = new_instance_id()
    else:
        instance_id = "r-" + secrets.token_hex(7)
    seeds = [cluster.replicas[0], cluster.primaries[1]]
    keyturn.add_instance(
        instance_id,
        [cluster.admin_url(seed) for seed in seeds],
        product=product,
        cluster=True,
    )
    return instance_id


def reset_default(keyturn: KeyturnServer, cluster: RedisClusterNodes, instance_id: str) -> int:
    """A Tencent reset of the instance password, followed until it ends; its task id."""
    client = redis_sdk(keyturn.endpoint)
    new = new_password()
    task_id = reset(client, instance_id, Password=new)
    info = wait_task(client, task_id)
    assert info.Status == "succeed", info.TaskMessage
    cluster.set_password(new)
    return task_id


def everywhere_only(
    cluster: RedisClusterNodes, password: str, old: str, user: str = "default"
) -> None:
    for node in cluster.nodes:
        assert can_login(node.port, password, user), f"{node.endpoint} refuses the new password"
        assert not can_login(node.port, old, user), f"{node.endpoint} still takes the old one"


def describe(keyturn: KeyturnServer, instance_id: str) -> Any:
    request = models.DescribeInstancesRequest()
    request.InstanceId = instance_id
    found = redis_sdk(keyturn.endpoint).DescribeInstances(request)
    assert found.TotalCount == 1
    return found.InstanceSet[0]


def task(keyturn: KeyturnServer, task_id: int) -> Task:
    return keyturn.with_store(lambda store: store.get_task(TENANT, task_id))


def test_tencent_reset_changes_every_node_and_survives_restarts(
    keyturn: KeyturnServer, redis_cluster: RedisClusterNodes
) -> None:
    instance_id = register(keyturn, redis_cluster)
    old = redis_cluster.password
    reset_default(keyturn, redis_cluster, instance_id)
    new = redis_cluster.password
    everywhere_only(redis_cluster, new, old)
    assert redis_cluster.replicates("after-reset")
    # Persisted on every node: a primary and a replica come back with the new password and
    # the replica logs in to its primary again (its masterauth was rewritten too).
    for node in (redis_cluster.primaries[2], redis_cluster.replicas[1]):
        redis_cluster.restart(node)
        assert can_login(node.port, new) and not can_login(node.port, old)
    assert redis_cluster.replicates("after-restarts")

    item = describe(keyturn, instance_id)
    assert (item.ProductType, item.Type) == ("cluster", 18)
    assert (item.RedisShardNum, item.RedisReplicasNum) == (3, 1)
    assert item.CurrentRedisVersion.startswith("7.")
    accounts_request = models.DescribeInstanceAccountRequest()
    accounts_request.InstanceId = instance_id
    accounts = redis_sdk(keyturn.endpoint).DescribeInstanceAccount(accounts_request)
    assert {"root", "kt_admin"} <= {a.AccountName for a in accounts.Accounts}


def test_a_node_added_after_registration_is_changed_at_the_next_reset(
    keyturn: KeyturnServer, redis_cluster: RedisClusterNodes
) -> None:
    instance_id = register(keyturn, redis_cluster)
    added = redis_cluster.add_node(redis_cluster.primaries[2])
    old = redis_cluster.password
    task_id = reset_default(keyturn, redis_cluster, instance_id)
    everywhere_only(redis_cluster, redis_cluster.password, old)
    assert added.endpoint in {step.endpoint for step in task(keyturn, task_id).steps}
    assert redis_cluster.replicates("after-adding")
    item = describe(keyturn, instance_id)
    # The shard with the added node has two replicas; every shard has at least one.
    assert (item.RedisShardNum, item.RedisReplicasNum) == (3, 1)


def test_a_failover_between_two_resets_is_followed(
    keyturn: KeyturnServer, redis_cluster: RedisClusterNodes
) -> None:
    instance_id = register(keyturn, redis_cluster)
    reset_default(keyturn, redis_cluster, instance_id)
    promoted = redis_cluster.replicas[1]
    former = redis_cluster.failover(promoted)
    # The former primary follows its new primary with the password of the first reset.
    assert former.link_up()
    old = redis_cluster.password
    task_id = reset_default(keyturn, redis_cluster, instance_id)
    everywhere_only(redis_cluster, redis_cluster.password, old)
    order = [step.endpoint for step in task(keyturn, task_id).steps]
    assert order.index(promoted.endpoint) < order.index(former.endpoint)
    redis_cluster.wait_settled()
    assert redis_cluster.primary_of(former).port == promoted.port
    assert redis_cluster.replicates("after-failover")


def test_alibaba_accounts_on_every_node(
    keyturn: KeyturnServer, redis_cluster: RedisClusterNodes
) -> None:
    instance_id = register(keyturn, redis_cluster, Product.ALIBABA_KVSTORE)
    sdk = KvstoreSdk("tea", keyturn.endpoint)
    first = new_password()
    sdk.call(
        "CreateAccount",
        InstanceId=instance_id,
        AccountName="app",
        AccountPassword=first,
        AccountPrivilege="RoleReadWrite",
    )
    for node in redis_cluster.nodes:
        assert can_login(node.port, first, "app"), node.endpoint
    listed = sdk.call("DescribeAccounts", InstanceId=instance_id)
    assert "app" in {a["AccountName"] for a in listed["Accounts"]["Account"]}
    second = new_password()
    sdk.call(
        "ResetAccountPassword", InstanceId=instance_id, AccountName="app", AccountPassword=second
    )
    everywhere_only(redis_cluster, second, first, user="app")
    assert redis_cluster.replicates("after-account")

    attribute = sdk.call("DescribeInstanceAttribute", InstanceId=instance_id)
    [item] = attribute["Instances"]["DBInstanceAttribute"]
    assert (item["ArchitectureType"], item["ShardCount"], item["NodeType"]) == (
        "cluster",
        3,
        "MASTER_SLAVE",
    )
    listing = sdk.call("DescribeInstances", InstanceIds=instance_id)
    [entry] = listing["Instances"]["KVStoreInstance"]
    assert (entry["ArchitectureType"], entry["ShardCount"]) == ("cluster", 3)
