"""Domain values: tenants, access keys, products, instances and their nodes.

Values are frozen dataclasses; row mapping lives in ``store``. A node's admin credential is a
``Secret`` so an ``Instance`` can be printed or logged without leaking it. ``parse_node_url`` turns
the inventory's connection URLs (``redis://user:pw@host:port``) into typed parts.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qsl, unquote, urlsplit

from keyturn.core.errors import InvalidParameterValue
from keyturn.core.secrets import Secret


class EngineKind(enum.StrEnum):
    """The database engines keyturn drives."""

    REDIS = "redis"
    POSTGRES = "postgres"
    MYSQL = "mysql"


class Product(enum.StrEnum):
    """A vendor product: which API family serves an instance and which engine sits behind it."""

    TENCENT_REDIS = "tencent-redis"
    TENCENT_POSTGRES = "tencent-postgres"
    TENCENT_TDMYSQL = "tencent-tdmysql"
    ALIBABA_KVSTORE = "alibaba-kvstore"
    HUAWEI_DCS = "huawei-dcs"

    @property
    def engine(self) -> EngineKind:
        return _PRODUCT_ENGINES[self]

    @property
    def named_accounts(self) -> bool:
        """Whether the product manages named accounts (Redis ACL users), so an engine without
        them cannot serve it."""
        return self is Product.ALIBABA_KVSTORE

    @property
    def id_pattern(self) -> re.Pattern[str]:
        """The vendor's instance id format, checked when an instance is registered."""
        return _PRODUCT_ID_PATTERNS[self]


_PRODUCT_ENGINES: Mapping[Product, EngineKind] = {
    Product.TENCENT_REDIS: EngineKind.REDIS,
    Product.TENCENT_POSTGRES: EngineKind.POSTGRES,
    Product.TENCENT_TDMYSQL: EngineKind.MYSQL,
    Product.ALIBABA_KVSTORE: EngineKind.REDIS,
    Product.HUAWEI_DCS: EngineKind.REDIS,
}
_PRODUCT_ID_PATTERNS: Mapping[Product, re.Pattern[str]] = {
    Product.TENCENT_REDIS: re.compile(r"^crs-[a-z0-9]{4,32}$"),
    Product.TENCENT_POSTGRES: re.compile(r"^postgres-[a-z0-9]{4,32}$"),
    Product.TENCENT_TDMYSQL: re.compile(r"^tdsql3?-[a-z0-9]{4,32}$"),
    Product.ALIBABA_KVSTORE: re.compile(r"^r-[a-z0-9]{8,32}$"),
    Product.HUAWEI_DCS: re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$"),
}

#: URL schemes accepted per engine; the ``s`` variants ask for TLS.
ENGINE_SCHEMES: Mapping[EngineKind, frozenset[str]] = {
    EngineKind.REDIS: frozenset({"redis", "rediss"}),
    EngineKind.POSTGRES: frozenset({"postgresql", "postgres"}),
    EngineKind.MYSQL: frozenset({"mysql"}),
}

#: Schemes that ask for TLS.
TLS_SCHEMES = frozenset({"rediss"})

#: The account an engine uses when a URL names none.
DEFAULT_ADMIN_USER: Mapping[EngineKind, str] = {
    EngineKind.REDIS: "default",
    EngineKind.POSTGRES: "postgres",
    EngineKind.MYSQL: "root",
}

#: The account whose password is "the instance password" (Redis: the ``default`` user). The
#: vendors' instance-password APIs change it by definition, so its own rights do not make it a
#: protected superuser; it is protected only when keyturn logs in with it.
INSTANCE_PASSWORD_ACCOUNT: Mapping[EngineKind, str] = {EngineKind.REDIS: "default"}


def login_name(engine: EngineKind, account: str) -> str:
    """The user name ``account`` logs in with: a MySQL account is one ``user@host`` row of a
    user (split on the last ``@``; no ``@`` is the name itself), other engines' accounts are
    plain user names."""
    if engine is EngineKind.MYSQL:
        user, at, _ = account.rpartition("@")
        return user if at else account
    return account


@dataclass(frozen=True, slots=True, kw_only=True)
class Tenant:
    """An account: a Tencent uin, an Alibaba account id, a Huawei project id."""

    id: str
    name: str


class KeySource(enum.StrEnum):
    """Where a record was declared; inventory reconciliation only touches its own records."""

    INVENTORY = "inventory"
    CLI = "cli"
    BOOTSTRAP = "bootstrap"


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessKey:
    """An API access key (SecretId / AccessKeyId / AK) with its signing secret."""

    id: str
    tenant_id: str
    secret: Secret
    enabled: bool = True
    source: KeySource = KeySource.CLI
    created_at: datetime | None = None
    #: Authorization policy documents (``keyturn.core.access``, kept as JSON text so this
    #: module stays free of them); None: the key is its tenant's administrator.
    policies: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeAddress:
    """Where a node listens and how keyturn logs in to it as administrator."""

    engine: EngineKind
    scheme: str
    host: str
    port: int
    username: str
    password: Secret | None
    database: str = ""
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def tls(self) -> bool:
        return self.scheme in TLS_SCHEMES

    def public_url(self) -> str:
        """The URL without its password: safe to show and to store in clear."""
        path = f"/{self.database}" if self.database else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{self.username}@{host}:{self.port}{path}"


class NodeRole(enum.StrEnum):
    """A node's place in its instance. The inventory declares data nodes as ``member`` (their
    role is discovered at every task, never assumed from their order) and watchers as
    ``sentinel``; discovery names ``primary`` and ``replica`` (in a Redis Cluster, per shard)."""

    MEMBER = "member"
    PRIMARY = "primary"
    REPLICA = "replica"
    SENTINEL = "sentinel"


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """One server of an instance. ``ordinal`` numbers the declared ones (discovered cluster
    nodes get ordinals above them); ``role`` is declared or discovered; ``shard`` names a Redis
    Cluster shard. ``pending_password`` is the admin credential written ahead of a reset that
    targets keyturn's own admin account."""

    instance_id: str
    ordinal: int
    address: NodeAddress
    pending_password: Secret | None = None
    role: NodeRole = NodeRole.MEMBER
    shard: str = ""

    @property
    def key(self) -> str:
        return f"{self.instance_id}/{self.ordinal}"

    @property
    def endpoint(self) -> str:
        """``host:port``: what identifies a node across discoveries."""
        return self.address.endpoint


@dataclass(frozen=True, slots=True, kw_only=True)
class Instance:
    """A database instance served under a vendor product. ``sentinels`` (Redis only) watch
    its primary: their URL's path names the master, e.g. ``redis://:pw@host:26379/mymaster``."""

    id: str
    tenant_id: str
    product: Product
    region: str
    name: str = ""
    password_free_allowed: bool = True
    #: Whether the vendor APIs may reset the accounts keyturn logs in with and superusers
    #: (refused by default: a key allowed to reset passwords must not take over the server).
    allow_admin_reset: bool = False
    nodes: tuple[Node, ...] = ()
    sentinels: tuple[Node, ...] = ()
    #: A Redis Cluster: ``nodes`` are seeds, the shards are discovered at every task.
    cluster: bool = False
    #: Last known state, refreshed by probes and finished tasks; None when never observed.
    no_auth: bool | None = None
    engine_version: str | None = None
    source: KeySource = KeySource.CLI
    created_at: datetime | None = None
    #: Operator labels (``env = "prod"``), sorted by key: what fleet jobs select by.
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def engine(self) -> EngineKind:
        return self.product.engine

    @property
    def primary(self) -> Node:
        """The first declared data node: where reads that any node can answer go (account
        listings). Changes never assume it is the primary: they discover it."""
        return self.nodes[0]

    @property
    def admin_logins(self) -> frozenset[str]:
        """The user names keyturn logs in with, on the nodes and on the sentinels."""
        return frozenset(node.address.username for node in (*self.nodes, *self.sentinels))


#: Label bounds: a few short tags per instance, in a charset that needs no quoting anywhere.
MAX_LABELS = 32
_LABEL_KEY = re.compile(r"^[a-z0-9]([a-z0-9_.\-]{0,62})$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9_.\-]{0,63}$")


def check_labels(raw: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    """An instance's labels, checked and sorted: at most 32; a key is 1-63 lowercase letters,
    digits, ``_``, ``.`` or ``-`` starting with a letter or digit; a value 0-63 letters,
    digits, ``_``, ``.`` or ``-``. ``InvalidParameterValue`` naming the first bad one."""
    if len(raw) > MAX_LABELS:
        raise InvalidParameterValue(f"an instance has at most {MAX_LABELS} labels")
    found: list[tuple[str, str]] = []
    for key, value in raw.items():
        if not isinstance(key, str) or not _LABEL_KEY.match(key):
            raise InvalidParameterValue(
                "a label key is 1-63 lowercase letters, digits, '_', '.' or '-', starting with "
                "a letter or digit"
            )
        if not isinstance(value, str) or not _LABEL_VALUE.match(value):
            raise InvalidParameterValue(
                f"label {key}: a value is 0-63 letters, digits, '_', '.' or '-'"
            )
        found.append((key, value))
    return tuple(sorted(found))


def parse_node_url(url: str, engine: EngineKind) -> NodeAddress:
    """Parse an admin connection URL such as ``redis://default:pw@127.0.0.1:6379/0``.

    Errors name the problem but never echo the URL, which holds a password.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidParameterValue("node URL is not a valid URL") from exc
    if parts.scheme not in ENGINE_SCHEMES[engine]:
        allowed = ", ".join(sorted(ENGINE_SCHEMES[engine]))
        raise InvalidParameterValue(f"node URL scheme must be one of: {allowed}")
    if not parts.hostname:
        raise InvalidParameterValue("node URL has no host")
    if port is None:
        raise InvalidParameterValue("node URL has no port")
    username = unquote(parts.username) if parts.username else DEFAULT_ADMIN_USER[engine]
    password = Secret(unquote(parts.password)) if parts.password is not None else None
    return NodeAddress(
        engine=engine,
        scheme=parts.scheme,
        host=parts.hostname,
        port=port,
        username=username,
        password=password,
        database=parts.path.lstrip("/"),
        options=dict(parse_qsl(parts.query)),
    )
