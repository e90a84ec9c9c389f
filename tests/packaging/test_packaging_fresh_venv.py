"""A new user's venv: the wheel alone, then PyContracts beside it, then PyContracts removed.

Issue 8's story: installing PyContracts (import name ``contracts``) beside
0.1 overwrote our ``contracts/__init__.py``, the CLI died with an
ImportError, and uninstalling PyContracts deleted our file. Now ledgerflow
owns only ``ledgerflow/``: the other package installs and uninstalls without
touching one of our files, and ``ledgerflow demo`` keeps working from a
non-editable install in an empty folder with the network cut.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging_venv import Venv, build_contracts_standin, installed_files

pytestmark = pytest.mark.slow

# Modules named like ledgerflow's parts, each failing loudly if it is ever
# imported instead of ours.
SHADOWS = ("contracts", "eventstore", "machines", "replay", "examples")


@pytest.fixture(scope="module")
def venv(built_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    return Venv(tmp_path_factory.mktemp("fresh") / "venv", built_wheel)


def demo_in_empty_folder(venv: Venv, folder: Path) -> str:
    folder.mkdir()
    done = venv.ledgerflow("demo", cwd=folder)
    assert done.returncode == 0, f"ledgerflow demo failed:\n{done.stdout}\n{done.stderr}"
    assert "completed" in done.stdout
    assert "bookings made: 1" in done.stdout
    assert (folder / "ledgerflow.db").exists()  # the default store, in the current folder
    return done.stdout


def test_install_puts_only_ledgerflow_at_the_top_of_site_packages(venv: Venv) -> None:
    tops = {p.name for p in venv.site.iterdir()} - {"_ledgerflow_test_deps.pth", "__pycache__"}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"ledgerflow"}
    assert [t for t in tops if t.endswith(".dist-info")] == [
        next(t for t in tops if t.startswith("ledgerflow-"))
    ]


def test_installed_ledgerflow_is_the_wheel_not_this_checkout(venv: Venv) -> None:
    where = venv.run_python("import ledgerflow.machines as m; print(m.__file__)")
    assert Path(where).is_relative_to(venv.site)


def test_demo_runs_from_the_wheel_in_an_empty_folder(venv: Venv, tmp_path: Path) -> None:
    demo_in_empty_folder(venv, tmp_path / "empty")


def test_pycontracts_installed_then_removed_changes_none_of_our_files(
    venv: Venv, tmp_path: Path
) -> None:
    ours = installed_files(venv.site, "ledgerflow")
    assert any(path.startswith("ledgerflow/contracts/") for path in ours)

    venv.pip("install", "--no-deps", "--no-index", str(build_contracts_standin(tmp_path)))
    # The stand-in is really there and really owns `contracts`...
    failed = venv.run_python(
        "try:\n import contracts\nexcept ImportError as e:\n print(e)", cwd=tmp_path
    )
    assert "stand-in for PyContracts" in failed
    # ...and neither our files nor the demo noticed.
    assert installed_files(venv.site, "ledgerflow") == ours
    demo_in_empty_folder(venv, tmp_path / "beside-pycontracts")

    venv.pip("uninstall", "--yes", "PyContracts")
    assert not (venv.site / "contracts").exists()
    assert installed_files(venv.site, "ledgerflow") == ours
    demo_in_empty_folder(venv, tmp_path / "after-uninstall")


def test_users_own_modules_in_the_current_folder_do_not_shadow_ours(
    venv: Venv, tmp_path: Path
) -> None:
    folder = tmp_path / "service"
    folder.mkdir()
    for name in SHADOWS:
        (folder / f"{name}.py").write_text(f"raise ImportError('the user\\'s own {name}.py')\n")
    done = venv.ledgerflow("demo", cwd=folder)
    assert done.returncode == 0, done.stderr
    # `python -c` puts the current folder first on sys.path: the hardest case.
    out = venv.run_python(
        "from ledgerflow import Workflow, open_store\n"
        "import ledgerflow.replay.cli, ledgerflow.examples.travel\n"
        "print('imported', Workflow.__module__)",
        cwd=folder,
    )
    assert out.startswith("imported ledgerflow.")
