"""``keyturn tls dev-cert`` and ``keyturn serve --tls-cert/--tls-key`` refusing bad input
before anything starts: exit status 2, a message naming the problem, never a key's content."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.cli import keyturn_cli


def keyturn(*args: str) -> subprocess.CompletedProcess[str]:
    return keyturn_cli(None, *args)


@pytest.fixture(scope="module")
def two_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    first, second = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    done = keyturn("tls", "dev-cert", "--dir", str(first), "--host", "127.0.0.1")
    assert done.returncode == 0, done.stderr
    assert "(created; give this to clients)" in done.stdout
    assert f"--tls-cert {first / 'server.pem'} --tls-key {first / 'server-key.pem'}" in done.stdout
    assert keyturn("tls", "dev-cert", "--dir", str(second)).returncode == 0
    again = keyturn("tls", "dev-cert", "--dir", str(first), "--host", "localhost")
    assert "(reused;" in again.stdout and "(for localhost)" in again.stdout
    return first, second


def test_dev_cert_refuses_a_bad_host(tmp_path: Path) -> None:
    done = keyturn("tls", "dev-cert", "--dir", str(tmp_path), "--host", "not a host")
    assert done.returncode == 2 and "neither an IP address nor a DNS name" in done.stderr


def test_serve_refuses_half_a_pair(two_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    first, _ = two_dirs
    done = keyturn(
        "serve", "--data-dir", str(tmp_path / "d"), "--tls-cert", str(first / "server.pem")
    )
    assert done.returncode == 2 and "go together" in done.stderr
    assert not (tmp_path / "d").exists()


def test_serve_refuses_a_mismatched_or_missing_pair(
    two_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    first, second = two_dirs
    key = second / "server-key.pem"
    done = keyturn(
        "serve",
        "--data-dir",
        str(tmp_path / "d"),
        "--tls-cert",
        str(first / "server.pem"),
        "--tls-key",
        str(key),
    )
    assert done.returncode == 2 and "do not load as a PEM pair" in done.stderr
    body = key.read_text().splitlines()[1]
    assert body not in done.stderr and body not in done.stdout
    missing = keyturn(
        "serve",
        "--data-dir",
        str(tmp_path / "d"),
        "--tls-cert",
        str(first / "nope.pem"),
        "--tls-key",
        str(key),
    )
    assert missing.returncode == 2 and "nope.pem does not exist" in missing.stderr
    assert not (tmp_path / "d").exists()
