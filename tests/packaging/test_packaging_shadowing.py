"""A user's own ``contracts.py`` (or ``machines.py``, ...) in the current folder shadows nothing.

0.1 installed ``contracts`` as a top-level package, so a service with its own
``contracts.py`` beside its code imported that one instead. This runs against
the environment the tests run in (the editable install); the same claim for
the built wheel is in ``test_packaging_fresh_venv.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

SHADOWS = ("contracts", "eventstore", "machines", "replay", "examples")


@pytest.fixture
def service_folder(tmp_path: Path) -> Path:
    for name in SHADOWS:
        (tmp_path / f"{name}.py").write_text(f"raise ImportError('the user\\'s own {name}.py')\n")
    return tmp_path


def user_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in {"PYTHONPATH", "PYTHONSAFEPATH", "LEDGERFLOW_DB"}}


def test_demo_ignores_the_users_contracts_py_in_the_current_folder(service_folder: Path) -> None:
    script = Path(sysconfig.get_path("scripts")) / "ledgerflow"
    done = subprocess.run(
        [str(script), "demo"], cwd=service_folder, env=user_env(), capture_output=True,
        text=True, check=False, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stdout


def test_a_script_beside_the_users_modules_imports_ours(service_folder: Path) -> None:
    # `python -c` (like `python script.py`) puts the script's folder first on
    # sys.path, ahead of site-packages.
    done = subprocess.run(
        [sys.executable, "-c",
         "from ledgerflow import Orchestrator, Plan, open_store\n"
         "import ledgerflow.replay.cli, ledgerflow.examples.travel\n"
         "print(Plan.__module__)"],
        cwd=service_folder, env=user_env(), capture_output=True, text=True, check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("ledgerflow.contracts")


def test_a_part_imported_by_its_folder_name_is_refused_not_copied() -> None:
    # From the repo root `import machines` would load a second copy of the
    # classes, whose failures would record module paths instead of stable names.
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    root = Path(__file__).resolve().parents[2]
    for part in ("contracts", "eventstore", "machines", "replay", "examples"):
        done = subprocess.run([sys.executable, "-c", f"import {part}"], cwd=root,
                              capture_output=True, text=True, check=False, timeout=60)
        assert done.returncode == 1, (part, done.stderr)
        assert f"Import ledgerflow.{part}, not {part}" in done.stderr, done.stderr
