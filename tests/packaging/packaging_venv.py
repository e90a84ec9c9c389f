"""The built wheel, and a fresh venv holding it and nothing of this checkout, made offline.

The wheel is built from a copy of the working tree (symlinks kept as links,
caches left out), so what is checked is what ``pip install .`` builds from the
files as they are now, committed or not, and the build's ``build/`` and
``*.egg-info`` never land in the checkout other work is going on in.
``--no-build-isolation`` keeps the build offline: the test extra installs the
backend the ``[build-system]`` table names.

The venv is clean (no ``--system-site-packages``: the editable install of
this checkout lives there and would answer any import the wheel fails to).
ledgerflow's runtime dependencies come from the current environment through
one ``.pth`` line naming a folder of links to exactly those distributions
(their import packages and dist-info, found from the wheel's
``Requires-Dist``), so nothing is downloaded and nothing else is visible.

PyContracts itself (1.8.12, an sdist) installs on Python 3.11 but its
``contracts/__init__.py`` dies on import (``from inspect import ArgSpec``);
what matters here is that it owns a top-level ``contracts`` package, so the
stand-in is a tiny wheel built in the test that owns one and raises the same
way on import.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement

__all__ = [
    "Venv",
    "build_contracts_standin",
    "build_source",
    "build_wheel",
    "installed_files",
]

REPO = Path(__file__).resolve().parents[2]

# Generated or cached, never part of a build's input.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".mypy_cache",
    ".ruff_cache", ".pytest_cache", ".hypothesis", ".benchmarks", "*.db", "*.db-wal",
    "*.db-shm",
)


def build_wheel(work: Path) -> Path:
    """Build the ledgerflow wheel from a copy of the working tree made under ``work``."""
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


def build_source(wheel: Path) -> Path:
    """The copy of the working tree ``wheel`` was built from (compare against it,
    not the live checkout, where other work may add a file mid-test)."""
    return wheel.parent.parent / "src"


def _runtime_requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as zf:
        (meta,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(zf.read(meta).decode())
    return [Requirement(r) for r in message.get_all("Requires-Dist") or []]


def _applies(marker: Marker | None) -> bool:
    # An extra's requirement (`extra == "postgres"`) is not a runtime one.
    return marker is None or marker.evaluate({"extra": ""})


def dependency_closure(wheel: Path) -> list[metadata.Distribution]:
    """The installed distributions the wheel needs at run time, transitively."""
    todo = [r for r in _runtime_requirements(wheel) if _applies(r.marker)]
    seen: dict[str, metadata.Distribution] = {}
    while todo:
        req = todo.pop()
        key = req.name.lower().replace("_", "-")
        if key in seen:
            continue
        dist = metadata.distribution(req.name)
        seen[key] = dist
        todo += [r for r in map(Requirement, dist.requires or []) if _applies(r.marker)]
    return list(seen.values())


def _top_level_entries(dist: metadata.Distribution) -> set[str]:
    entries = set()
    for file in dist.files or []:
        first = file.parts[0]
        if first not in {"..", "__pycache__"} and not first.endswith(".pth"):
            entries.add(first)
    return entries


class Venv:
    """A venv under ``root`` with the wheel installed (no pip inside: the host's drives it)."""

    def __init__(self, root: Path, wheel: Path) -> None:
        self.root = root
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(root)],
            check=True, stdin=subprocess.DEVNULL,
        )
        self.python = root / "bin" / "python"
        purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        self.site = Path(self.run_python(purelib))
        deps = root / "deps"
        deps.mkdir()
        for dist in dependency_closure(wheel):
            home = Path(str(dist.locate_file("")))
            for entry in _top_level_entries(dist):
                if (home / entry).exists() and not (deps / entry).exists():
                    (deps / entry).symlink_to(home / entry)
        (self.site / "_ledgerflow_test_deps.pth").write_text(f"{deps}\n")
        self.pip("install", "--no-deps", "--no-index", str(wheel))

    def env(self) -> dict[str, str]:
        """The environment of a user's shell: no PYTHONPATH, no LEDGERFLOW_DB of ours."""
        env = {k: v for k, v in os.environ.items()
               if k not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH", "LEDGERFLOW_DB"}}
        env["PATH"] = f"{self.root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        return env

    def pip(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(self.python), "--quiet", *args],
            capture_output=True, text=True, check=False, env=self.env(),
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, f"pip {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
        return done

    def run_python(self, code: str, cwd: Path | None = None) -> str:
        """Run ``python -c code``; by default in the venv's folder, never in this checkout
        (``-c`` puts the current folder first on sys.path, and ours holds ``ledgerflow/``)."""
        done = subprocess.run(
            [str(self.python), "-c", code], capture_output=True, text=True, check=False,
            cwd=cwd or self.root, env=self.env(), stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def ledgerflow(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        """The installed console script, offline when this machine lets us cut the network."""
        cmd = [str(self.root / "bin" / "ledgerflow"), *args]
        if _can_unshare_network():
            cmd = ["unshare", "--net", *cmd]
        return subprocess.run(
            cmd, capture_output=True, text=True, check=False, cwd=cwd, env=self.env(),
            stdin=subprocess.DEVNULL,
        )


def _can_unshare_network() -> bool:
    try:
        return subprocess.run(["unshare", "--net", "true"], capture_output=True,
                              check=False).returncode == 0
    except FileNotFoundError:
        return False


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()}"


def build_contracts_standin(out: Path) -> Path:
    """A wheel of a distribution 'PyContracts' that owns the top-level ``contracts``."""
    name, version = "PyContracts", "1.8.12"
    dist_info = f"{name}-{version}.dist-info"
    files = {
        "contracts/__init__.py": (
            b"raise ImportError(\"cannot import name 'ArgSpec' from 'inspect' "
            b"(stand-in for PyContracts 1.8.12 on Python 3.11)\")\n"
        ),
        "contracts/library/__init__.py": b"",
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
        ),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: ledgerflow-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
        f"{dist_info}/top_level.txt": b"contracts\n",
    }
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in files.items())
    record += f"{dist_info}/RECORD,,\n"
    wheel = out / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
        zf.writestr(f"{dist_info}/RECORD", record)
    return wheel


def installed_files(site: Path, dist_name: str) -> dict[str, str]:
    """Path -> sha256 of every file a distribution's RECORD lists (bytecode aside)."""
    (dist_info,) = site.glob(f"{dist_name}-*.dist-info")
    hashes = {}
    for line in (dist_info / "RECORD").read_text().splitlines():
        path = line.split(",")[0]
        if path.endswith(".pyc") or path.startswith(".."):
            continue
        file = site / path
        hashes[path] = hashlib.sha256(file.read_bytes()).hexdigest() if file.exists() else "gone"
    return hashes
