"""Unit tests of the HTTP-edge settings in ``keyturn.config``: ``KEYTURN_MAX_CONNECTIONS``,
``KEYTURN_READ_TIMEOUT``, ``KEYTURN_TRUSTED_PROXIES`` and ``KEYTURN_SERVED_HOSTS`` — defaults,
precedence (environment over the ``[server]`` table), normalization, and a ``ConfigError``
naming the setting for every bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyturn.config import ConfigError, Settings, load_settings


def from_file(tmp_path: Path, table: str, env: dict[str, str] | None = None) -> Settings:
    config = tmp_path / "keyturn.toml"
    config.write_text(f"[server]\n{table}\n")
    return load_settings(config=config, env=env or {})


def test_defaults() -> None:
    settings = load_settings(env={})
    assert settings.max_connections == 1000
    assert settings.read_timeout == 10.0
    assert settings.trusted_proxies == ()
    assert settings.served_hosts == ()


def test_from_the_environment() -> None:
    settings = load_settings(
        env={
            "KEYTURN_MAX_CONNECTIONS": "20",
            "KEYTURN_READ_TIMEOUT": "2.5",
            "KEYTURN_TRUSTED_PROXIES": " 127.0.0.1, 10.1.2.3/8,::1,, 127.0.0.1/32 ",
            "KEYTURN_SERVED_HOSTS": "API.Example.com, 127.0.0.1:9000,[::1]:9000,api.example.com",
        }
    )
    assert settings.max_connections == 20
    assert settings.read_timeout == 2.5
    # Normalized networks, duplicates dropped.
    assert settings.trusted_proxies == ("127.0.0.1/32", "10.0.0.0/8", "::1/128")
    assert settings.served_hosts == ("api.example.com", "127.0.0.1:9000", "[::1]:9000")


def test_from_the_server_table_below_the_environment(tmp_path: Path) -> None:
    table = (
        "max_connections = 50\nread_timeout = 4\n"
        'trusted_proxies = ["192.168.0.0/16", "fd00::/8"]\nserved_hosts = "keyturn.internal"'
    )
    settings = from_file(tmp_path, table)
    assert settings.max_connections == 50
    assert settings.read_timeout == 4.0
    assert settings.trusted_proxies == ("192.168.0.0/16", "fd00::/8")
    assert settings.served_hosts == ("keyturn.internal",)
    env = {"KEYTURN_MAX_CONNECTIONS": "7", "KEYTURN_TRUSTED_PROXIES": "10.0.0.1"}
    overridden = load_settings(config=tmp_path / "keyturn.toml", env=env)
    assert overridden.max_connections == 7
    assert overridden.trusted_proxies == ("10.0.0.1/32",)
    assert overridden.read_timeout == 4.0


def test_an_empty_variable_means_unset() -> None:
    settings = load_settings(env={"KEYTURN_TRUSTED_PROXIES": "", "KEYTURN_SERVED_HOSTS": ""})
    assert settings.trusted_proxies == () and settings.served_hosts == ()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KEYTURN_MAX_CONNECTIONS", "0"),
        ("KEYTURN_MAX_CONNECTIONS", "-5"),
        ("KEYTURN_MAX_CONNECTIONS", "2.5"),
        ("KEYTURN_MAX_CONNECTIONS", "many"),
        ("KEYTURN_READ_TIMEOUT", "0"),
        ("KEYTURN_READ_TIMEOUT", "-1"),
        ("KEYTURN_READ_TIMEOUT", "nan"),
        ("KEYTURN_READ_TIMEOUT", "inf"),
        ("KEYTURN_READ_TIMEOUT", "soon"),
        ("KEYTURN_TRUSTED_PROXIES", "*"),
        ("KEYTURN_TRUSTED_PROXIES", "localhost"),
        ("KEYTURN_TRUSTED_PROXIES", "10.0.0.0/33"),
        ("KEYTURN_TRUSTED_PROXIES", "10.0.0.1, proxy.internal"),
        ("KEYTURN_SERVED_HOSTS", "http://api.example.com"),
        ("KEYTURN_SERVED_HOSTS", "api.example.com/"),
        ("KEYTURN_SERVED_HOSTS", "two words"),
        ("KEYTURN_SERVED_HOSTS", "api.example.com:"),
        ("KEYTURN_SERVED_HOSTS", "api.example.com:99999"),
        ("KEYTURN_SERVED_HOSTS", "api.example.com:0"),
        ("KEYTURN_SERVED_HOSTS", "::1"),
        ("KEYTURN_SERVED_HOSTS", "-leading.example"),
    ],
)
def test_bad_values_name_the_setting(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(env={name: value})


@pytest.mark.parametrize(
    ("table", "name"),
    [
        ("max_connections = true", "KEYTURN_MAX_CONNECTIONS"),
        ("max_connections = 2.5", "KEYTURN_MAX_CONNECTIONS"),
        ("read_timeout = false", "KEYTURN_READ_TIMEOUT"),
        ("trusted_proxies = 5", "KEYTURN_TRUSTED_PROXIES"),
        ("trusted_proxies = [1, 2]", "KEYTURN_TRUSTED_PROXIES"),
        ("served_hosts = {a = 1}", "KEYTURN_SERVED_HOSTS"),
    ],
)
def test_bad_table_values_name_the_setting(tmp_path: Path, table: str, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        from_file(tmp_path, table)
