"""The packages: ``python -m build`` makes an sdist and, from it, a wheel that holds every module,
the migrations and the console script; the wheel installed in a fresh venv prints its version
and runs ``keyturn sandbox``, through which the Tencent SDK resets a real Redis."""

from __future__ import annotations

import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import keyturn
from tests.support.logins import can_login
from tests.support.packaging import ROOT, build_dists, clean_env, install_wheel
from tests.support.passwords import new_password
from tests.support.sandbox import SandboxRun
from tests.support.sdk import redis_sdk, reset, wait_task

pytestmark = pytest.mark.engine

PACKAGE = ROOT / "src" / "keyturn"


@pytest.fixture
def runs() -> Iterator[list[SandboxRun]]:
    made: list[SandboxRun] = []
    yield made
    for run in made:
        run.kill()


def package_files() -> list[str]:
    """Every file of the package in the checkout, relative to ``src``."""
    return sorted(
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )


def test_the_wheel_installs_in_a_clean_venv_and_resets_through_its_sandbox(
    tmp_path: Path, runs: list[SandboxRun]
) -> None:
    dists = build_dists(tmp_path / "build")
    version = keyturn.__version__
    assert dists.wheel.name == f"keyturn-{version}-py3-none-any.whl"
    assert dists.sdist.name == f"keyturn-{version}.tar.gz"

    with zipfile.ZipFile(dists.wheel) as wheel:
        in_wheel = set(wheel.namelist())
        entry_points = wheel.read(f"keyturn-{version}.dist-info/entry_points.txt").decode()
    assert [f for f in package_files() if f not in in_wheel] == []
    assert "keyturn = keyturn.cli:main" in entry_points
    with tarfile.open(dists.sdist) as sdist:
        in_sdist = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert [f for f in package_files() if f"src/{f}" not in in_sdist] == []
    assert "deploy/keyturn.service" in in_sdist

    venv = tmp_path / "venv"
    bin_dir = install_wheel(dists.wheel, venv)
    env = clean_env(venv)
    shown = subprocess.run(
        [str(bin_dir / "keyturn"), "--version"], capture_output=True, text=True, env=env, timeout=60
    )
    assert (shown.returncode, shown.stdout) == (0, f"keyturn {version}\n"), shown.stderr
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import keyturn; print(keyturn.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert where.stdout.startswith(str(venv) + "/"), where.stdout + where.stderr

    run = SandboxRun(
        tmp_path / "data", command=[str(bin_dir / "keyturn")], engines="redis", env=env
    )
    runs.append(run)
    doc = run.wait_ready()
    entry = doc["products"]["tencent-redis"]
    client = redis_sdk(
        doc["endpoint"].removeprefix("http://"),
        key_id=doc["key"]["id"],
        secret=doc["key"]["secret"],
    )
    password = new_password()
    task = reset(client, entry["instance_id"], Password=password)
    assert wait_task(client, task).Status == "succeed"
    assert can_login(int(entry["address"].rsplit(":", 1)[1]), password)
    assert run.stop() == 0
    assert run.leftovers() == ([], [])


def unit_directives(text: str) -> dict[str, list[str]]:
    """``section.Key`` -> every value it is given (systemd allows repeating a directive)."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key}", []).append(value)
    return found


def test_the_systemd_unit_runs_keyturn_as_its_own_user_confined_to_its_data_dir() -> None:
    unit = unit_directives((ROOT / "deploy" / "keyturn.service").read_text())

    def one(key: str) -> str:
        (value,) = unit[f"Service.{key}"]
        return value

    environment = dict(value.split("=", 1) for value in unit["Service.Environment"])
    data_dir = environment["KEYTURN_DATA_DIR"]
    assert one("User") not in ("", "root")
    assert one("ExecStart").endswith("/keyturn serve")
    assert one("NoNewPrivileges") == "yes"
    assert one("ProtectSystem") == "strict"
    assert one("ReadWritePaths") == data_dir
    assert data_dir == "/var/lib/" + one("StateDirectory")
    assert one("StateDirectoryMode") == "0700"
