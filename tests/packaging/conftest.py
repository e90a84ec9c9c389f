"""Fixtures of the packaging tests: the wheel a user would install, built once per session.

The wheel is built from a copy of the working tree (symlinks kept as links,
caches left out), so what is checked is what ``pip install .`` builds from the
files as they are now, committed or not, and the build's ``build/`` and
``*.egg-info`` never land in the checkout other work is going on in.
``--no-build-isolation`` keeps the build offline: the test extra installs the
backend the ``[build-system]`` table names.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Generated or cached, never part of a build's input.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".mypy_cache",
    ".ruff_cache", ".pytest_cache", ".hypothesis", ".benchmarks", "*.db", "*.db-wal",
    "*.db-shm",
)


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ledgerflow wheel built from the working tree."""
    work = tmp_path_factory.mktemp("wheel-build")
    source = work / "src"
    shutil.copytree(REPO, source, symlinks=True, ignore=NOT_SOURCE)
    out = work / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "--quiet", "--wheel-dir", str(out), str(source)],
        capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"pip wheel failed:\n{done.stdout}\n{done.stderr}"
    wheels = sorted(out.glob("ledgerflow-*.whl"))
    assert len(wheels) == 1, f"expected one ledgerflow wheel, got {wheels}"
    return wheels[0]
