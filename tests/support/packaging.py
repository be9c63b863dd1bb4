"""Build keyturn's sdist and wheel from a copy of the source tree, and install the wheel in a
fresh virtual environment.

``build_dists`` copies what the build reads (``pyproject.toml``, ``README.md``, ``MANIFEST.in``,
``src/``, ``deploy/``) to a temporary directory, so the build never writes ``build/`` or
``*.egg-info`` into the checkout, and runs ``python -m build`` there: the sdist first, then the
wheel built *from the sdist*, which proves the sdist holds everything the wheel needs. The
build is isolated (pip fetches ``setuptools>=77`` from PyPI into a throwaway environment):
the project venv's setuptools may be older than ``[build-system]`` asks, so ``--no-isolation``
is not an option.

``install_wheel`` makes a venv without pip (``python -m venv --without-pip``, fast), installs the
wheel into it with the project venv's pip (``pip --python``, ``--no-deps --no-index``: nothing
is downloaded), and gives it the runtime dependencies through a ``.pth`` line naming the project
venv's site-packages. A ``.pth`` path is appended after the venv's own site-packages, so
``import keyturn`` finds the installed wheel, never the project's editable checkout (whose own
``.pth`` is not processed: only the new venv's are). Installing the dependencies from PyPI
instead would take minutes and make the test depend on every package's latest release.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_SOURCES = ("pyproject.toml", "README.md", "MANIFEST.in", "src", "deploy")


@dataclass(frozen=True)
class Dists:
    sdist: Path
    wheel: Path


def _run(
    argv: list[str], timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
    output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{argv[:4]} failed:\n{output}"
    return done


def build_dists(workdir: Path) -> Dists:
    source, out = workdir / "source", workdir / "dist"
    source.mkdir(parents=True)
    for name in _SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif path.exists():
            shutil.copy2(path, source / name)
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(source)], timeout=300)
    (sdist,) = out.glob("keyturn-*.tar.gz")
    (wheel,) = out.glob("keyturn-*.whl")
    return Dists(sdist=sdist, wheel=wheel)


def clean_env(venv: Path) -> dict[str, str]:
    """This environment without anything pointing at the checkout or the project venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin"
    return env


def install_wheel(wheel: Path, venv: Path) -> Path:
    """A fresh venv with ``wheel`` installed; returns its ``bin`` directory."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=120)
    python = venv / "bin" / "python"
    _run(
        [
            *(sys.executable, "-m", "pip", "--python", str(python)),
            *("install", "--no-deps", "--no-index", "--no-compile", str(wheel)),
        ],
        timeout=120,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    purelib = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        timeout=30,
        env=clean_env(venv),
    ).stdout.strip()
    dependencies = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(purelib, "keyturn-test-dependencies.pth").write_text(
        "\n".join(sorted(dependencies)) + "\n"
    )
    return venv / "bin"
