"""What ``keyturn sandbox`` prints and writes (``keyturn.cli.sandbox_report``): one instance id
per product in the vendor's format, example calls that parse (shell words for tccli, Python that
compiles for the SDK heredocs) and name the endpoint, key and instance, passwords the products
accept, and a JSON document that lists what was skipped and why."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from keyturn.cli.sandbox_report import (
    ALIBABA_PASSWORD,
    EXAMPLE_PASSWORD,
    PRODUCTS,
    ProductSpec,
    example,
    report,
    text,
)
from keyturn.core import passwords
from keyturn.core.model import Product

ENDPOINT = "http://127.0.0.1:9100"
KEY_ID, SECRET = "AKIDsandboxkey000000000000000000000", "sandbox-secret-0123456789"


def spec(product: Product) -> ProductSpec:
    return next(s for s in PRODUCTS if s.product is product)


def test_one_spec_per_product_with_a_vendor_format_id() -> None:
    assert sorted(s.product for s in PRODUCTS) == sorted(Product)
    for each in PRODUCTS:
        assert each.product.id_pattern.match(each.instance_id), each


@pytest.mark.parametrize(
    ("product", "policy", "password"),
    [
        (Product.TENCENT_REDIS, passwords.TENCENT_REDIS, EXAMPLE_PASSWORD),
        (Product.TENCENT_POSTGRES, passwords.TENCENT_POSTGRES, EXAMPLE_PASSWORD),
        (Product.TENCENT_TDMYSQL, passwords.TENCENT_TDMYSQL, EXAMPLE_PASSWORD),
        (Product.ALIBABA_KVSTORE, passwords.ALIBABA_KVSTORE, ALIBABA_PASSWORD),
        (Product.HUAWEI_DCS, passwords.HUAWEI_DCS, EXAMPLE_PASSWORD),
    ],
)
def test_each_example_sets_a_password_its_product_accepts(
    product: Product, policy: passwords.PasswordPolicy, password: str
) -> None:
    policy.check(password)
    assert password in example(spec(product), ENDPOINT, KEY_ID, SECRET)


@pytest.mark.parametrize(
    ("product", "words"),
    [
        (Product.TENCENT_REDIS, ["redis", "ResetPassword", "--InstanceId", "crs-sandbox"]),
        (Product.TENCENT_POSTGRES, ["postgres", "ResetAccountPassword", "--UserName", "app"]),
        (Product.TENCENT_TDMYSQL, ["tdmysql", "ResetUsersPassword", "--InstanceId"]),
    ],
)
def test_tencent_examples_are_tccli_commands_with_their_environment(
    product: Product, words: list[str]
) -> None:
    argv = shlex.split(example(spec(product), ENDPOINT, KEY_ID, SECRET))
    env = dict(word.split("=", 1) for word in argv[:3])
    assert env == {
        "TENCENTCLOUD_SECRET_ID": KEY_ID,
        "TENCENTCLOUD_SECRET_KEY": SECRET,
        "TENCENTCLOUD_REGION": "ap-guangzhou",
    }
    assert argv[3] == "tccli"
    assert all(word in argv for word in words)
    assert argv[argv.index("--endpoint") + 1] == ENDPOINT


def test_the_tdmysql_example_names_user_and_host() -> None:
    argv = shlex.split(example(spec(Product.TENCENT_TDMYSQL), ENDPOINT, KEY_ID, SECRET))
    users = argv[argv.index("--Users") + 1]
    assert '"UserName": "app"' in users and '"Host": "%"' in users


@pytest.mark.parametrize("product", [Product.ALIBABA_KVSTORE, Product.HUAWEI_DCS])
def test_sdk_examples_are_python_heredocs_that_compile(product: Product) -> None:
    lines = example(spec(product), ENDPOINT, KEY_ID, SECRET).splitlines()
    assert lines[0] == "python3 - <<'EOF'" and lines[-1] == "EOF"
    source = "\n".join(lines[1:-1])
    compile(source, "<example>", "exec")
    assert KEY_ID in source and SECRET in source and spec(product).instance_id in source


def test_the_report_lists_products_and_what_was_skipped() -> None:
    redis_dir = Path("/data/sandbox/tencent-redis")
    document = report(
        endpoint=ENDPOINT,
        key_id=KEY_ID,
        secret=SECRET,
        addresses={Product.TENCENT_REDIS: ("127.0.0.1:4000", redis_dir)},
        skipped={Product.TENCENT_POSTGRES: "postgres is not installed: apt-get install postgresql"},
    )
    assert document["key"] == {"id": KEY_ID, "secret": SECRET}
    assert document["tenant"] == "sandbox"
    assert list(document["products"]) == ["tencent-redis"]
    entry = document["products"]["tencent-redis"]
    assert (entry["address"], entry["dir"], entry["account"]) == (
        "127.0.0.1:4000",
        str(redis_dir),
        "default",
    )
    shown = text(document, Path("/data/sandbox.json"))
    assert SECRET in shown and "crs-sandbox" in shown
    assert (
        "tencent-postgres: skipped, postgres is not installed: apt-get install postgresql" in shown
    )
