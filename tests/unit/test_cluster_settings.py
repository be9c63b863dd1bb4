"""Unit tests of the cluster settings in ``keyturn.config``: ``KEYTURN_NODE_ID`` and
``KEYTURN_TASK_LEASE`` — defaults, the ``[server]`` table, and a ``ConfigError`` naming the
setting for every bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyturn.config import ConfigError, load_settings


def test_defaults() -> None:
    settings = load_settings(env={})
    assert settings.node_id is None  # hostname-pid-random, chosen at start
    assert settings.task_lease == 10.0


def test_from_the_environment_over_the_file(tmp_path: Path) -> None:
    config = tmp_path / "keyturn.toml"
    config.write_text('[server]\nnode_id = "file-node"\ntask_lease = 30\n')
    assert load_settings(config=config, env={}).node_id == "file-node"
    assert load_settings(config=config, env={}).task_lease == 30.0
    env = {"KEYTURN_NODE_ID": "node-1.example", "KEYTURN_TASK_LEASE": "2.5"}
    settings = load_settings(config=config, env=env)
    assert (settings.node_id, settings.task_lease) == ("node-1.example", 2.5)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KEYTURN_TASK_LEASE", "0"),
        ("KEYTURN_TASK_LEASE", "-3"),
        ("KEYTURN_TASK_LEASE", "soon"),
        ("KEYTURN_TASK_LEASE", "inf"),
        ("KEYTURN_NODE_ID", "two words"),
        ("KEYTURN_NODE_ID", "x" * 129),
        ("KEYTURN_NODE_ID", "bell\x07"),
    ],
)
def test_bad_values_name_the_setting(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(env={name: value})
