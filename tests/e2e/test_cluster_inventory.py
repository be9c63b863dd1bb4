"""A Redis Cluster declared both ways a user can: ``cluster = true`` in the inventory file that
``keyturn serve`` reconciles, and ``keyturn instances add --cluster`` on the same data dir while
the server runs. ``instances list`` shows both as clusters, a non-Redis product cannot be one,
and through the official Tencent SDK both list as clusters of three shards and a reset of the
one declared by a single seed changes all six nodes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tencentcloud.redis.v20180412 import models

from tests.support.cli import keyturn_cli as keyturn
from tests.support.keyturn_server import TENANT, KeyturnServer
from tests.support.logins import can_login
from tests.support.passwords import new_password
from tests.support.redis_cluster_nodes import RedisClusterNodes
from tests.support.sdk import redis_sdk, reset, wait_task

pytestmark = pytest.mark.engine

FILE_ID, CLI_ID = "crs-clusterfile", "crs-clustercli"


def test_a_cluster_from_the_inventory_file_and_from_the_cli(
    make_server: Callable[..., KeyturnServer], redis_cluster: RedisClusterNodes
) -> None:
    env = {"KT_CLUSTER_ADMIN": redis_cluster.admin_password}
    server = make_server(extra_env=env)
    seed = "redis://kt_admin:${KT_CLUSTER_ADMIN}@127.0.0.1:%d"
    server.config.write_text(
        server.config.read_text()
        + f"""
[[instances]]
id = "{FILE_ID}"
tenant = "{TENANT}"
product = "tencent-redis"
region = "ap-guangzhou"
nodes = ["{seed % redis_cluster.replicas[2].port}"]
cluster = true
"""
    )
    server.start()
    common = ["--tenant", TENANT, "--region", "ap-guangzhou", "--cluster"]
    added = keyturn(
        server.data_dir,
        "instances",
        "add",
        "--id",
        CLI_ID,
        "--product",
        "tencent-redis",
        "--node",
        seed % redis_cluster.primaries[0].port,
        *common,
        env=env,
    )
    assert added.returncode == 0, added.stderr
    refused = keyturn(
        server.data_dir,
        "instances",
        "add",
        "--id",
        "postgres-cluster1",
        "--product",
        "tencent-postgres",
        "--node",
        "postgresql://postgres:pw@127.0.0.1:5432/postgres",
        *common,
    )
    assert refused.returncode == 2 and "only Redis instances are clusters" in refused.stderr
    listed = keyturn(server.data_dir, "instances", "list").stdout
    rows = [line for line in listed.splitlines() if FILE_ID in line or CLI_ID in line]
    assert len(rows) == 2 and all("cluster" in row for row in rows)
    assert redis_cluster.admin_password not in listed

    client = redis_sdk(server.endpoint)
    request = models.DescribeInstancesRequest()
    request.InstanceIds = [FILE_ID, CLI_ID]
    described = client.DescribeInstances(request).InstanceSet
    assert sorted((i.InstanceId, i.ProductType, i.RedisShardNum) for i in described) == [
        (CLI_ID, "cluster", 3),
        (FILE_ID, "cluster", 3),
    ]
    old, new = redis_cluster.password, new_password()
    info = wait_task(client, reset(client, FILE_ID, Password=new))
    assert info.Status == "succeed", info.TaskMessage
    for node in redis_cluster.nodes:
        assert can_login(node.port, new) and not can_login(node.port, old), node.endpoint
