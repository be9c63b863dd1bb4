"""Typed, frozen server settings, resolved once at start-up.

Precedence, highest first: command-line options, ``KEYTURN_*`` environment variables, the
``[server]`` table of the config file (the same TOML file that declares the inventory), then
defaults. Nothing else in the package reads the environment for settings.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9000
DEFAULT_DATA_DIR = ".keyturn"
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_READ_TIMEOUT = 10.0
DEFAULT_STORE_TIMEOUT = 5.0
#: ``KEYTURN_LOG_FORMAT``: human lines, or one JSON object a line (``keyturn.logjson``).
LOG_FORMATS = ("text", "json")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the setting."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    #: The inventory/config TOML file, if any.
    config: Path | None = None
    #: The store URL; default: SQLite under ``data_dir``.
    database_url: str | None = None
    #: Base64 master key for secrets at rest; default: ``data_dir/master.key``.
    master_key: str | None = field(default=None, repr=False)
    #: Seconds a store call may wait for the database (connecting, each statement, a pooled
    #: connection); past it the call fails with StoreUnavailable. PostgreSQL only.
    store_timeout: float = DEFAULT_STORE_TIMEOUT
    #: Seconds any single engine operation may take.
    engine_timeout: float = 5.0
    #: Seconds a synchronous vendor API (e.g. PostgreSQL ResetAccountPassword) waits for its
    #: task before answering OperationTimedOut; the task goes on.
    sync_deadline: float = 30.0
    #: Tasks run at once, across all instances.
    task_concurrency: int = 64
    #: Tasks run at once on one instance (different accounts).
    instance_concurrency: int = 4
    #: Seconds a task keeps retrying a node that is unavailable before it fails and rolls back.
    task_deadline: float = 20.0
    #: Seconds a failed task keeps trying to restore the previous password on a node that is
    #: unavailable; it stays ``running`` meanwhile, so nobody is told "failed" while a node
    #: may still hold the new password.
    rollback_deadline: float = 300.0
    #: Seconds to let tasks in flight finish on shutdown before parking them.
    shutdown_grace: float = 10.0
    #: This node's id in the store (``keyturn nodes``); default: hostname, pid and a random
    #: suffix, new at every start.
    node_id: str | None = None
    #: Seconds a node's lease on a task lasts unrenewed: after it another node takes the task
    #: over (``keyturn.core.cluster``).
    task_lease: float = 10.0
    #: Seconds between the secret scheduler's ticks (its resolution; ``KEYTURN_SECRET_TICK``).
    secret_tick: float = 1.0
    log_level: str = "INFO"
    #: ``text`` or ``json`` (one JSON object a line).
    log_format: str = "text"
    #: When set, ``GET /metrics`` needs ``Authorization: Bearer <token>``.
    metrics_token: str | None = field(default=None, repr=False)
    #: Requests per second per tenant and action, overriding the vendors' documented limits;
    #: ``*`` overrides every action (tests use it to lift limits).
    rate_limits: Mapping[str, int] = field(default_factory=dict)
    rate_limit_write: int = 20
    rate_limit_read: int = 100
    #: Fault-injection pauses by worker step (tests only), from KEYTURN_FAULT_PAUSE="step=sec,...".
    fault_pauses: Mapping[str, float] = field(default_factory=dict)
    #: PEM certificate (chain) and private key: when both are set the API is served over
    #: HTTPS (TLS 1.2 or newer) instead of plain HTTP.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Open client connections at most; connections over it are closed as soon as they are
    #: accepted, without an answer (see ``keyturn.http.edge``).
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    #: Seconds a client has to deliver a request's headers and body; a connection that has not
    #: within it is closed.
    read_timeout: float = DEFAULT_READ_TIMEOUT
    #: Proxies (normalized IP networks, e.g. ``10.0.0.0/8``, ``127.0.0.1/32``) whose
    #: ``X-Forwarded-For`` / ``X-Forwarded-Proto`` are believed; none by default, so the
    #: audited source address is the connection's peer.
    trusted_proxies: tuple[str, ...] = ()
    #: ``host[:port]`` names (lower-case) a signed request may name in its ``Host``; empty:
    #: any.
    served_hosts: tuple[str, ...] = ()
    #: Server processes on this machine (``serve --workers``), sharing the listening socket
    #: and the store; each is a full node.
    workers: int = 1

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert is not None else "http"


def load_settings(
    *,
    config: Path | None = None,
    data_dir: Path | None = None,
    host: str | None = None,
    port: int | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    workers: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve settings from options, environment and the config file."""
    env = os.environ if env is None else env
    config = config or _path(env.get("KEYTURN_CONFIG"))
    server: Mapping[str, Any] = {}
    if config is not None:
        server = _server_table(config)

    def pick(option: Any, env_name: str, key: str, default: Any) -> Any:
        if option is not None:
            return option
        if env.get(env_name):
            return env[env_name]
        return server.get(key, default)

    cert = _path(pick(tls_cert, "KEYTURN_TLS_CERT", "tls_cert", None))
    key = _path(pick(tls_key, "KEYTURN_TLS_KEY", "tls_key", None))
    if (cert is None) != (key is None):
        raise ConfigError("--tls-cert and --tls-key (KEYTURN_TLS_CERT/KEYTURN_TLS_KEY) go together")
    max_connections = _whole(
        "KEYTURN_MAX_CONNECTIONS",
        pick(None, "KEYTURN_MAX_CONNECTIONS", "max_connections", DEFAULT_MAX_CONNECTIONS),
    )
    read_timeout = _seconds(
        "KEYTURN_READ_TIMEOUT",
        pick(None, "KEYTURN_READ_TIMEOUT", "read_timeout", DEFAULT_READ_TIMEOUT),
    )
    store_timeout = _seconds(
        "KEYTURN_STORE_TIMEOUT",
        pick(None, "KEYTURN_STORE_TIMEOUT", "store_timeout", DEFAULT_STORE_TIMEOUT),
    )
    trusted_proxies = _networks(
        "KEYTURN_TRUSTED_PROXIES", pick(None, "KEYTURN_TRUSTED_PROXIES", "trusted_proxies", ())
    )
    served_hosts = _hosts(
        "KEYTURN_SERVED_HOSTS", pick(None, "KEYTURN_SERVED_HOSTS", "served_hosts", ())
    )
    processes = _whole(
        "--workers (KEYTURN_WORKERS)", pick(workers, "KEYTURN_WORKERS", "workers", 1)
    )
    try:
        return Settings(
            host=str(pick(host, "KEYTURN_HOST", "host", DEFAULT_HOST)),
            port=int(pick(port, "KEYTURN_PORT", "port", DEFAULT_PORT)),
            data_dir=Path(pick(data_dir, "KEYTURN_DATA_DIR", "data_dir", DEFAULT_DATA_DIR)),
            config=config,
            database_url=pick(None, "KEYTURN_DATABASE_URL", "database_url", None),
            master_key=env.get("KEYTURN_MASTER_KEY") or None,
            store_timeout=store_timeout,
            engine_timeout=float(pick(None, "KEYTURN_ENGINE_TIMEOUT", "engine_timeout", 5.0)),
            sync_deadline=float(pick(None, "KEYTURN_SYNC_DEADLINE", "sync_deadline", 30.0)),
            task_concurrency=int(pick(None, "KEYTURN_TASK_CONCURRENCY", "task_concurrency", 64)),
            instance_concurrency=int(
                pick(None, "KEYTURN_INSTANCE_CONCURRENCY", "instance_concurrency", 4)
            ),
            task_deadline=float(pick(None, "KEYTURN_TASK_DEADLINE", "task_deadline", 20.0)),
            rollback_deadline=float(
                pick(None, "KEYTURN_ROLLBACK_DEADLINE", "rollback_deadline", 300.0)
            ),
            shutdown_grace=float(pick(None, "KEYTURN_SHUTDOWN_GRACE", "shutdown_grace", 10.0)),
            node_id=_node_id(pick(None, "KEYTURN_NODE_ID", "node_id", None)),
            task_lease=_seconds(
                "KEYTURN_TASK_LEASE", pick(None, "KEYTURN_TASK_LEASE", "task_lease", 10.0)
            ),
            secret_tick=_seconds(
                "KEYTURN_SECRET_TICK", pick(None, "KEYTURN_SECRET_TICK", "secret_tick", 1.0)
            ),
            log_level=str(pick(None, "KEYTURN_LOG_LEVEL", "log_level", "INFO")).upper(),
            log_format=_log_format(pick(None, "KEYTURN_LOG_FORMAT", "log_format", "text")),
            metrics_token=_token(pick(None, "KEYTURN_METRICS_TOKEN", "metrics_token", None)),
            rate_limits=_rate_limits(env.get("KEYTURN_RATE_LIMITS"), server.get("rate_limits")),
            rate_limit_write=int(pick(None, "KEYTURN_RATE_LIMIT_WRITE", "rate_limit_write", 20)),
            rate_limit_read=int(pick(None, "KEYTURN_RATE_LIMIT_READ", "rate_limit_read", 100)),
            fault_pauses=_pauses(env.get("KEYTURN_FAULT_PAUSE", "")),
            tls_cert=cert,
            tls_key=key,
            max_connections=max_connections,
            read_timeout=read_timeout,
            trusted_proxies=trusted_proxies,
            served_hosts=served_hosts,
            workers=processes,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid setting: {exc}") from None


def _node_id(value: object) -> str | None:
    """1-128 printable characters without spaces, or None (the default id)."""
    if value is None or value == "":
        return None
    text = str(value)
    if not 0 < len(text) <= 128 or not text.isprintable() or any(c.isspace() for c in text):
        raise ConfigError("KEYTURN_NODE_ID must be 1-128 printable characters, no spaces")
    return text


def _log_format(value: object) -> str:
    text = str(value).strip().lower()
    if text not in LOG_FORMATS:
        raise ConfigError(f"KEYTURN_LOG_FORMAT must be text or json (not {value!r})")
    return text


def _token(value: object) -> str | None:
    """A bearer token: 16-512 visible ASCII characters, or None (no token)."""
    if value is None or value == "":
        return None
    text = str(value)
    if not 16 <= len(text) <= 512 or not all("!" <= c <= "~" for c in text):
        # The value itself is never echoed: it is a secret.
        raise ConfigError("KEYTURN_METRICS_TOKEN must be 16-512 visible ASCII characters")
    return text


def _path(value: object) -> Path | None:
    return Path(str(value)) if value else None


def _server_table(config: Path) -> Mapping[str, Any]:
    try:
        doc = tomllib.loads(config.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {config} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {config} is not valid TOML: {exc}") from None
    table = doc.get("server", {})
    if not isinstance(table, dict):
        raise ConfigError("[server] must be a table")
    return table


def _rate_limits(spec: str | None, table: Any) -> dict[str, int]:
    """``action=N,...`` from the environment, else the ``[server.rate_limits]`` table."""
    if spec:
        found: dict[str, int] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            action, _, limit = item.rpartition("=")
            found[action.strip()] = int(limit)
        return found
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise ConfigError("[server.rate_limits] must be a table of action = requests per second")
    return {str(k): int(v) for k, v in table.items()}


def _pauses(spec: str) -> dict[str, float]:
    pauses: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, seconds = item.partition("=")
        pauses[name] = float(seconds or "0")
    return pauses


def _items(name: str, value: object) -> list[str]:
    """A comma-separated string (environment) or a list of strings (config file)."""
    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, list | tuple) and all(isinstance(part, str) for part in value):
        parts = list(value)
    else:
        raise ConfigError(f"{name} must be a comma-separated string or a list of strings")
    return [part.strip() for part in parts if part.strip()]


def _whole(name: str, value: object) -> int:
    """A whole number of at least 1 (``str`` first, so ``2.5`` and ``true`` are refused)."""
    try:
        number = int(str(value))
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigError(f"{name} must be a whole number, at least 1 (not {value!r})")
    return number


def _seconds(name: str, value: object) -> float:
    """A finite number of seconds above 0."""
    try:
        seconds = float(str(value))
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < math.inf:
        raise ConfigError(f"{name} must be a number of seconds above 0 (not {value!r})")
    return seconds


def _networks(name: str, value: object) -> tuple[str, ...]:
    """Addresses and CIDR networks, normalized (``127.0.0.1`` -> ``127.0.0.1/32``). Anything
    else, host names and ``*`` included, is refused: trust must name addresses."""
    networks: list[str] = []
    for item in _items(name, value):
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(
                f"{name}: {item!r} is not an IP address or network (e.g. 10.0.0.0/8)"
            ) from None
        if str(network) not in networks:
            networks.append(str(network))
    return tuple(networks)


#: ``host`` or ``host:port``; the host a DNS name or IPv4 address, or a bracketed IPv6 address.
_HOST = re.compile(
    r"(?:[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{1,5}))?"
)


def _hosts(name: str, value: object) -> tuple[str, ...]:
    hosts: list[str] = []
    for item in _items(name, value):
        host = item.lower()
        match = _HOST.fullmatch(host)
        if match is None or (match["port"] is not None and not 0 < int(match["port"]) < 65536):
            raise ConfigError(f"{name}: {item!r} is not a host or host:port")
        if host not in hosts:
            hosts.append(host)
    return tuple(hosts)
