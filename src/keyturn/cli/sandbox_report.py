"""What ``keyturn sandbox`` tells its user: the products it registers (instance ids, regions, the
account a reset changes), a copy-paste call of the vendor's own CLI or SDK for each, and the
same as JSON in ``DATA_DIR/sandbox.json`` (mode 0600 from its creation, replaced atomically).

The sandbox's access key is printed and written on purpose: it is a throwaway key for a
throwaway tenant, and showing it is the point of the command.
"""

from __future__ import annotations

import json
import os
import shlex
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from keyturn.core.model import Product

JSON_FILE: Final = "sandbox.json"
TENANT: Final = "sandbox"
#: A new password each example sets: it meets every product's rules (PostgreSQL's need all
#: four kinds of characters, Alibaba's allow ``_`` but not ``-``).
EXAMPLE_PASSWORD: Final = "N3w-Passw0rd"
ALIBABA_PASSWORD: Final = "N3w_Passw0rd"


@dataclass(frozen=True, slots=True)
class ProductSpec:
    """One product the sandbox registers: its instance, and the account a reset changes."""

    product: Product
    instance_id: str
    region: str
    engine: str  # the engine launcher: redis, postgres or mariadb
    account: str
    account_host: str | None = None  # TDSQL accounts are user + host


PRODUCTS: Final = (
    ProductSpec(Product.TENCENT_REDIS, "crs-sandbox", "ap-guangzhou", "redis", "default"),
    ProductSpec(Product.TENCENT_POSTGRES, "postgres-sandbox", "ap-guangzhou", "postgres", "app"),
    ProductSpec(Product.TENCENT_TDMYSQL, "tdsql3-sandbox", "ap-guangzhou", "mariadb", "app", "%"),
    ProductSpec(Product.ALIBABA_KVSTORE, "r-sandbox0", "cn-hangzhou", "redis", "app"),
    ProductSpec(
        Product.HUAWEI_DCS,
        str(uuid.uuid5(uuid.NAMESPACE_URL, "keyturn:sandbox:huawei-dcs")),
        "cn-north-4",
        "redis",
        "default",
    ),
)

#: How to get an engine's binaries on Debian/Ubuntu.
INSTALL_HINTS: Final = {
    "redis": "apt-get install redis-server",
    "postgres": "apt-get install postgresql",
    "mariadb": "apt-get install mariadb-server",
}


def example(spec: ProductSpec, endpoint: str, key_id: str, secret: str) -> str:
    """A shell command that resets ``spec``'s account through the vendor's tool or SDK."""
    tencent = (
        f"TENCENTCLOUD_SECRET_ID={key_id} TENCENTCLOUD_SECRET_KEY={secret} "
        f"TENCENTCLOUD_REGION={spec.region} tccli"
    )
    at = f"--endpoint {endpoint}"
    if spec.product is Product.TENCENT_REDIS:
        return (
            f"{tencent} redis ResetPassword {at} --InstanceId {spec.instance_id}"
            f" --Password '{EXAMPLE_PASSWORD}'"
        )
    if spec.product is Product.TENCENT_POSTGRES:
        return (
            f"{tencent} postgres ResetAccountPassword {at} --DBInstanceId {spec.instance_id}"
            f" --UserName {spec.account} --Password '{EXAMPLE_PASSWORD}'"
        )
    if spec.product is Product.TENCENT_TDMYSQL:
        users = [
            {"UserName": spec.account, "Host": spec.account_host, "Password": EXAMPLE_PASSWORD}
        ]
        return (
            f"{tencent} tdmysql ResetUsersPassword {at} --InstanceId {spec.instance_id}"
            f" --Users {shlex.quote(json.dumps(users))}"
        )
    host = endpoint.split("://", 1)[1]
    if spec.product is Product.ALIBABA_KVSTORE:
        return "\n".join(
            [
                "python3 - <<'EOF'",
                "from alibabacloud_r_kvstore20150101.client import Client",
                "from alibabacloud_r_kvstore20150101 import models",
                "from alibabacloud_tea_openapi.models import Config",
                f"client = Client(Config(access_key_id={key_id!r}, access_key_secret={secret!r},",
                f"    region_id={spec.region!r}, endpoint={host!r}, protocol='http'))",
                "print(client.reset_account_password(models.ResetAccountPasswordRequest(",
                f"    instance_id={spec.instance_id!r}, account_name={spec.account!r},",
                f"    account_password={ALIBABA_PASSWORD!r})).body)",
                "EOF",
            ]
        )
    return "\n".join(
        [
            "python3 - <<'EOF'",
            "from huaweicloudsdkcore.auth.credentials import BasicCredentials",
            "from huaweicloudsdkdcs.v2 import DcsClient, ResetInstancePasswordBody,"
            " ResetPasswordRequest",
            f"credentials = BasicCredentials({key_id!r}, {secret!r}, {TENANT!r})  # project id",
            "client = DcsClient.new_builder().with_credentials(credentials)"
            f".with_endpoints([{endpoint!r}]).build()",
            f"print(client.reset_password(ResetPasswordRequest(instance_id={spec.instance_id!r},",
            f"    body=ResetInstancePasswordBody(new_password={EXAMPLE_PASSWORD!r}))))",
            "EOF",
        ]
    )


def report(
    *,
    endpoint: str,
    key_id: str,
    secret: str,
    addresses: dict[Product, tuple[str, Path]],
    skipped: dict[Product, str],
) -> dict[str, Any]:
    """The JSON document: ``addresses`` maps each registered product to its engine's
    ``host:port`` and directory; ``skipped`` each product left out to the reason."""
    products: dict[str, Any] = {}
    for spec in PRODUCTS:
        if spec.product not in addresses:
            continue
        address, directory = addresses[spec.product]
        entry: dict[str, Any] = {
            "instance_id": spec.instance_id,
            "region": spec.region,
            "engine": spec.engine,
            "address": address,
            "dir": str(directory),
            "account": spec.account,
            "example": example(spec, endpoint, key_id, secret),
        }
        if spec.account_host is not None:
            entry["account_host"] = spec.account_host
        products[str(spec.product)] = entry
    return {
        "endpoint": endpoint,
        "tenant": TENANT,
        "key": {"id": key_id, "secret": secret},
        "pid": os.getpid(),
        "products": products,
        "skipped": {str(product): why for product, why in skipped.items()},
    }


def text(document: dict[str, Any], json_path: Path) -> str:
    """What the terminal shows: the key, then each product with its example call."""
    key = document["key"]
    lines = [
        f"keyturn sandbox: serving on {document['endpoint']}",
        f"  tenant     {document['tenant']}",
        f"  SecretId   {key['id']}",
        f"  SecretKey  {key['secret']}",
        "",
    ]
    for product, entry in document["products"].items():
        account = entry["account"]
        if "account_host" in entry:
            account += f"@{entry['account_host']}"
        lines.append(
            f"{product}: instance {entry['instance_id']} ({entry['region']}) on"
            f" {entry['engine']} {entry['address']}, account {account}"
        )
        lines += ["  " + line for line in entry["example"].splitlines()]
        lines.append("")
    for product, why in document["skipped"].items():
        lines.append(f"{product}: skipped, {why}")
    lines.append(
        f"The same as JSON: {json_path}. Ctrl-C (or SIGTERM) stops keyturn and the engines."
    )
    return "\n".join(lines) + "\n"


def write_json(path: Path, document: dict[str, Any]) -> None:
    """``document`` in ``path``, 0600 from its creation, replacing an older one atomically."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.unlink(missing_ok=True)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (json.dumps(document, indent=2) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
