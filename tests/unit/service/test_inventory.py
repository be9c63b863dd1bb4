from __future__ import annotations

import pytest

from keyturn.core.errors import InvalidParameterValue
from keyturn.core.model import Instance, KeySource, NodeRole, Product
from keyturn.core.secrets import Secret
from keyturn.service.admin import build_instance
from keyturn.service.inventory import InstanceSpec, InventoryError, parse_inventory

EXAMPLE = """
[[tenants]]
id = "1300000001"            # the account
name = "demo"

[[keys]]
tenant = "1300000001"
id = "AKIDkeyturnDEMO0001"
secret = "a-long-random-secret"

[[instances]]
id = "crs-5a4py64p"
tenant = "1300000001"
product = "tencent-redis"
region = "ap-guangzhou"
name = "orders-cache"
nodes = ["redis://default:${ORDERS_REDIS_ADMIN}@127.0.0.1:6379"]
password_free_allowed = true
"""


def declared(spec: InstanceSpec, **options: object) -> Instance:
    """The instance the service builds from an inventory declaration, with ``options`` (the
    declared fields a test is about) passed on."""
    return build_instance(
        tenant_id=spec.tenant,
        instance_id=spec.id,
        product=spec.product,
        region=spec.region,
        node_urls=spec.nodes,
        name=spec.name,
        password_free_allowed=spec.password_free_allowed,
        source=KeySource.INVENTORY,
        **options,  # type: ignore[arg-type]
    )


def added_by_cli(product: Product, node: str, **options: object) -> Instance:
    """A one-node instance of ``product`` as ``keyturn instances add`` builds it."""
    return build_instance(
        tenant_id="1",
        instance_id="crs-abcd1234" if product is Product.TENCENT_REDIS else "postgres-abcd1234",
        product=product,
        region="r",
        node_urls=[Secret(node)],
        name="",
        password_free_allowed=True,
        source=KeySource.CLI,
        **options,  # type: ignore[arg-type]
    )


def test_the_documented_shape_parses() -> None:
    inventory = parse_inventory(EXAMPLE, {"ORDERS_REDIS_ADMIN": "s3cret-Admin"})
    assert inventory.tenants[0].id == "1300000001"
    assert inventory.keys[0].secret.reveal() == "a-long-random-secret"
    instance = inventory.instances[0]
    assert instance.product is Product.TENCENT_REDIS
    assert instance.nodes[0].reveal() == "redis://default:s3cret-Admin@127.0.0.1:6379"
    assert instance.allow_admin_reset is False
    assert "s3cret" not in repr(inventory)


def test_allow_admin_reset_is_read_and_built() -> None:
    env = {"ORDERS_REDIS_ADMIN": "x"}
    text = EXAMPLE + "allow_admin_reset = true\n"
    spec = parse_inventory(text, env).instances[0]
    assert spec.allow_admin_reset is True
    instance = declared(spec, allow_admin_reset=spec.allow_admin_reset)
    assert instance.allow_admin_reset is True
    with pytest.raises(InventoryError, match="allow_admin_reset: must be true or false"):
        parse_inventory(EXAMPLE + 'allow_admin_reset = "yes"\n', env)


def test_secret_env() -> None:
    text = EXAMPLE.replace('secret = "a-long-random-secret"', 'secret_env = "KT_KEY"')
    env = {"ORDERS_REDIS_ADMIN": "x", "KT_KEY": "k" * 20}
    assert parse_inventory(text, env).keys[0].secret.reveal() == "k" * 20


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        (EXAMPLE, {}, "environment variable ORDERS_REDIS_ADMIN is not set"),
        (EXAMPLE.replace("tencent-redis", "oracle"), {"ORDERS_REDIS_ADMIN": "x"}, "product"),
        (
            EXAMPLE.replace('tenant = "1300000001"\nproduct', 'tenant = "9"\nproduct'),
            {"ORDERS_REDIS_ADMIN": "x"},
            "tenant '9' is not declared",
        ),
        ("[[tenants]\n", {}, "not valid TOML"),
        (
            EXAMPLE.replace("a-long-random-secret", "short"),
            {"ORDERS_REDIS_ADMIN": "x"},
            "at least 16",
        ),
    ],
)
def test_errors_name_the_field_never_the_value(
    text: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(InventoryError) as caught:
        parse_inventory(text, env)
    assert message in caught.value.message


def test_sentinels_parse_and_validate() -> None:
    text = EXAMPLE.replace(
        "password_free_allowed = true",
        'sentinels = ["redis://default:${SENTINEL_PW}@127.0.0.1:26379/mymaster"]',
    )
    spec = parse_inventory(text, {"ORDERS_REDIS_ADMIN": "a", "SENTINEL_PW": "s-pw"}).instances[0]
    assert spec.sentinels[0].reveal() == "redis://default:s-pw@127.0.0.1:26379/mymaster"
    instance = build_instance(
        tenant_id="1300000001",
        instance_id=spec.id,
        product=spec.product,
        region=spec.region,
        node_urls=spec.nodes,
        name="",
        password_free_allowed=True,
        source=KeySource.INVENTORY,
        sentinel_urls=spec.sentinels,
    )
    assert [s.role for s in instance.sentinels] == [NodeRole.SENTINEL]
    assert instance.sentinels[0].address.database == "mymaster"
    assert len(instance.nodes) == 1


@pytest.mark.parametrize(
    ("product", "url", "problem"),
    [
        (Product.TENCENT_REDIS, "redis://:pw@127.0.0.1:26379", "must name the master"),
        (Product.TENCENT_POSTGRES, "redis://:pw@127.0.0.1:26379/m", "only Redis"),
    ],
)
def test_bad_sentinels_are_refused(product: Product, url: str, problem: str) -> None:
    node = "redis://default:pw@127.0.0.1:6379"
    if product is Product.TENCENT_POSTGRES:
        node = "postgresql://postgres:pw@127.0.0.1:5432/postgres"
    with pytest.raises(InvalidParameterValue, match=problem):
        added_by_cli(product, node, sentinel_urls=[Secret(url)])


def test_cluster_is_read_and_built() -> None:
    env = {"ORDERS_REDIS_ADMIN": "x"}
    spec = parse_inventory(EXAMPLE + "cluster = true\n", env).instances[0]
    assert spec.cluster is True
    assert parse_inventory(EXAMPLE, env).instances[0].cluster is False
    instance = declared(spec, cluster=spec.cluster)
    assert instance.cluster is True
    with pytest.raises(InventoryError, match="cluster: must be true or false"):
        parse_inventory(EXAMPLE + 'cluster = "yes"\n', env)


@pytest.mark.parametrize(
    ("product", "node", "sentinels", "problem"),
    [
        (
            Product.TENCENT_POSTGRES,
            "postgresql://postgres:pw@127.0.0.1:5432/postgres",
            [],
            "only Redis instances are clusters",
        ),
        (
            Product.TENCENT_REDIS,
            "redis://default:pw@127.0.0.1:6379",
            ["redis://:pw@127.0.0.1:26379/mymaster"],
            "a Redis Cluster has no sentinels",
        ),
    ],
)
def test_bad_clusters_are_refused(
    product: Product, node: str, sentinels: list[str], problem: str
) -> None:
    with pytest.raises(InvalidParameterValue, match=problem):
        added_by_cli(product, node, sentinel_urls=[Secret(url) for url in sentinels], cluster=True)


def test_labels_are_read_checked_and_built() -> None:
    env = {"ORDERS_REDIS_ADMIN": "a"}
    spec = parse_inventory(EXAMPLE + 'labels = { team = "orders", env = "prod" }\n', env)
    assert spec.instances[0].labels == (("env", "prod"), ("team", "orders"))
    assert parse_inventory(EXAMPLE, env).instances[0].labels == ()
    for bad in ('labels = "env=prod"', 'labels = { Env = "prod" }', "labels = { env = 1 }"):
        with pytest.raises(InventoryError, match=r"instances\[0\].labels"):
            parse_inventory(f"{EXAMPLE}{bad}\n", env)
