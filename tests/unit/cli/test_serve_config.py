"""Unit tests of the uvicorn configuration ``keyturn serve`` builds (``uvicorn_config``): the
edge protocol bound to the connection limit and read deadline, no WebSocket upgrades, and proxy
headers believed only from ``KEYTURN_TRUSTED_PROXIES`` — with none configured there is no
proxy-header middleware at all, whatever uvicorn's own ``FORWARDED_ALLOW_IPS`` says; and the
``--workers`` setting and the configuration the supervisor hands its workers."""

from __future__ import annotations

import pickle

import pytest
from starlette.types import Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from keyturn.cli.serve import uvicorn_config
from keyturn.cli.workers import WorkerConfig, worker_config
from keyturn.config import ConfigError, load_settings
from keyturn.http.edge import EdgeLimits, EdgeProtocol


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("not called")


def test_edge_protocol_and_no_proxy_trust_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")
    settings = load_settings(env={"KEYTURN_MAX_CONNECTIONS": "20", "KEYTURN_READ_TIMEOUT": "3"})
    config = uvicorn_config(app, settings, None)
    protocol = config.http_protocol_class
    assert isinstance(protocol, type) and issubclass(protocol, EdgeProtocol)
    assert protocol.limits == EdgeLimits(max_connections=20, read_timeout=3.0)
    assert config.ws_protocol_class is None
    assert config.limit_concurrency is None  # uvicorn's own limit would answer 503
    assert not config.proxy_headers
    assert not isinstance(config.loaded_app, ProxyHeadersMiddleware)


def test_trusted_proxies_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")
    settings = load_settings(env={"KEYTURN_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1"})
    config = uvicorn_config(app, settings, None)
    middleware = config.loaded_app
    assert isinstance(middleware, ProxyHeadersMiddleware)
    trusted = middleware.trusted_hosts
    assert not trusted.always_trust
    assert "127.0.0.1" in trusted and "10.20.30.40" in trusted
    assert "127.0.0.2" not in trusted and "192.168.1.1" not in trusted and "*" not in trusted
    # A client behind the proxy cannot name itself: the last address not a proxy is believed.
    assert trusted.get_trusted_client_address("1.2.3.4, 203.0.113.9, 10.0.0.5") == (
        "203.0.113.9",
        0,
    )


def test_workers_setting() -> None:
    assert load_settings(env={}).workers == 1
    assert load_settings(env={"KEYTURN_WORKERS": "3"}).workers == 3
    assert load_settings(workers=2, env={"KEYTURN_WORKERS": "3"}).workers == 2
    for wrong in ("0", "-1", "2.5", "many"):
        with pytest.raises(ConfigError, match="workers"):
            load_settings(env={"KEYTURN_WORKERS": wrong})


def test_worker_config_crosses_a_process_boundary_as_its_settings() -> None:
    # Workers are spawned: uvicorn pickles the configuration, whose edge protocol class and
    # TLS context cannot be pickled; each worker rebuilds them from the settings instead.
    settings = load_settings(env={"KEYTURN_WORKERS": "2", "KEYTURN_PORT": "9123"})
    config = WorkerConfig(settings)
    assert (config.workers, config.port) == (2, 9123)
    rebuild, args = config.__reduce__()
    assert rebuild is worker_config and args == (settings,)
    assert pickle.loads(pickle.dumps(settings)) == settings
