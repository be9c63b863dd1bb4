"""Unit tests of the TLS settings: ``--tls-cert``/``--tls-key`` resolution in
``keyturn.config`` and the ``rediss://`` node URL options turned into redis-py arguments
(``keyturn.engines.redis_login.tls_options``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyturn.config import ConfigError, load_settings
from keyturn.core.errors import EngineRejected
from keyturn.core.model import EngineKind, parse_node_url
from keyturn.engines.redis_login import tls_options


def test_tls_is_off_by_default() -> None:
    settings = load_settings(env={})
    assert settings.tls_cert is None and settings.tls_key is None
    assert settings.scheme == "http"


def test_tls_from_options_env_and_config(tmp_path: Path) -> None:
    env = {"KEYTURN_TLS_CERT": "/env/cert.pem", "KEYTURN_TLS_KEY": "/env/key.pem"}
    settings = load_settings(env=env)
    assert (settings.tls_cert, settings.tls_key) == (Path("/env/cert.pem"), Path("/env/key.pem"))
    assert settings.scheme == "https"
    options = load_settings(env=env, tls_cert=Path("/o/c.pem"), tls_key=Path("/o/k.pem"))
    assert (options.tls_cert, options.tls_key) == (Path("/o/c.pem"), Path("/o/k.pem"))
    config = tmp_path / "keyturn.toml"
    config.write_text('[server]\ntls_cert = "/cfg/c.pem"\ntls_key = "/cfg/k.pem"\n')
    from_file = load_settings(config=config, env={})
    assert (from_file.tls_cert, from_file.tls_key) == (Path("/cfg/c.pem"), Path("/cfg/k.pem"))


@pytest.mark.parametrize("env", [{"KEYTURN_TLS_CERT": "/c.pem"}, {"KEYTURN_TLS_KEY": "/k.pem"}])
def test_cert_and_key_go_together(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="go together"):
        load_settings(env=env)


def options_of(url: str) -> dict[str, object]:
    return tls_options(parse_node_url(url, EngineKind.REDIS))


def test_plain_redis_has_no_tls_options() -> None:
    assert options_of("redis://default:pw@127.0.0.1:6379?ssl_ca_certs=/ca.pem") == {}


def test_rediss_defaults_verify_against_system_cas() -> None:
    assert options_of("rediss://default:pw@db.example:6380") == {
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
    }


def test_rediss_options_are_passed_on() -> None:
    url = (
        "rediss://default:pw@127.0.0.1:6380/0?ssl_ca_certs=/etc/ca.pem&ssl_certfile=/c.pem"
        "&ssl_keyfile=/k.pem&ssl_ca_path=/etc/cas&ssl_check_hostname=false&unrelated=1"
    )
    assert options_of(url) == {
        "ssl_ca_certs": "/etc/ca.pem",
        "ssl_ca_path": "/etc/cas",
        "ssl_certfile": "/c.pem",
        "ssl_keyfile": "/k.pem",
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": False,
    }


def test_cert_reqs_none_turns_the_hostname_check_off() -> None:
    found = options_of("rediss://default:pw@127.0.0.1:6380?ssl_cert_reqs=NONE")
    assert found == {"ssl_cert_reqs": "none", "ssl_check_hostname": False}


@pytest.mark.parametrize("query", ["ssl_cert_reqs=sometimes", "ssl_check_hostname=perhaps"])
def test_bad_values_are_refused_without_the_url(query: str) -> None:
    with pytest.raises(EngineRejected) as caught:
        options_of(f"rediss://default:Secret-pw1@127.0.0.1:6380?{query}")
    assert "Secret-pw1" not in str(caught.value)
    assert "127.0.0.1:6380" in str(caught.value)
