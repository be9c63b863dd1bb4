"""Which engines ``keyturn sandbox`` starts: an engine whose binaries are missing is skipped with
the apt-get line that installs it (Redis, which every run needs, fails the run instead), and an
engine left out of ``--engines`` is skipped as such. Nothing is started here: every engine asked
for is missing or left out."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyturn.cli import sandbox
from keyturn.core.model import Product
from keyturn.engines.local import LocalEngine, LocalEngineError


@pytest.fixture
def nothing_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "redis_binary", lambda: None)
    monkeypatch.setattr(sandbox, "postgres_bindir", lambda: None)
    monkeypatch.setattr(sandbox, "mariadb_installed", lambda: False)


def test_missing_sql_engines_are_skipped_with_how_to_install_them(
    nothing_installed: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started: dict[Product, LocalEngine] = {}
    skipped = sandbox._start_engines(tmp_path, ["postgres", "mariadb"], started)
    assert started == {}
    assert skipped[Product.TENCENT_POSTGRES] == (
        "postgres is not installed: apt-get install postgresql"
    )
    assert skipped[Product.TENCENT_TDMYSQL] == (
        "mariadb is not installed: apt-get install mariadb-server"
    )
    for product in (Product.TENCENT_REDIS, Product.ALIBABA_KVSTORE, Product.HUAWEI_DCS):
        assert skipped[product] == "not in --engines (redis)"
    err = capsys.readouterr().err
    assert "tencent-postgres skipped, postgres is not installed: apt-get install postgresql" in err


def test_a_missing_redis_server_fails_the_run(nothing_installed: None, tmp_path: Path) -> None:
    with pytest.raises(LocalEngineError, match="apt-get install redis-server"):
        sandbox._start_engines(tmp_path, ["redis"], {})
