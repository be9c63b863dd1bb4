"""``KEYTURN_LOG_FORMAT`` and ``KEYTURN_METRICS_TOKEN`` in ``keyturn.config``: defaults, the
environment over the ``[server]`` table, a ``ConfigError`` for a bad value that never echoes a
token, and the token out of the settings' repr."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyturn.config import ConfigError, load_settings

TOKEN = "metrics-token-0123456789abcdef"


def test_defaults() -> None:
    settings = load_settings(env={})
    assert settings.log_format == "text" and settings.metrics_token is None


def test_from_the_environment_and_the_file(tmp_path: Path) -> None:
    env = {"KEYTURN_LOG_FORMAT": "JSON", "KEYTURN_METRICS_TOKEN": TOKEN}
    settings = load_settings(env=env)
    assert settings.log_format == "json" and settings.metrics_token == TOKEN
    assert TOKEN not in repr(settings)
    config = tmp_path / "keyturn.toml"
    config.write_text(f'[server]\nlog_format = "json"\nmetrics_token = "{TOKEN}"\n')
    from_file = load_settings(config=config, env={})
    assert from_file.log_format == "json" and from_file.metrics_token == TOKEN
    assert load_settings(config=config, env={"KEYTURN_LOG_FORMAT": "text"}).log_format == "text"


@pytest.mark.parametrize("value", ["xml", "logfmt", "1"])
def test_a_bad_log_format(value: str) -> None:
    with pytest.raises(ConfigError, match="KEYTURN_LOG_FORMAT"):
        load_settings(env={"KEYTURN_LOG_FORMAT": value})


@pytest.mark.parametrize("value", ["short", "has a space in it 0123", "x" * 513, "tök" * 8])
def test_a_bad_token_is_refused_without_being_echoed(value: str) -> None:
    with pytest.raises(ConfigError, match="KEYTURN_METRICS_TOKEN") as caught:
        load_settings(env={"KEYTURN_METRICS_TOKEN": value})
    assert value not in str(caught.value)
