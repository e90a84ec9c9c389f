"""What ``pip install .`` installs: one package, ledgerflow, with every file of every part.

Issue 8: the 0.1 wheel put ``contracts``, ``eventstore``, ``machines``,
``replay`` and ``examples`` at the top of site-packages, where PyContracts
overwrote one of them. The wheel is inspected as a zip, so these tests need no
venv; ``test_packaging_fresh_venv.py`` installs it for real.
"""

from __future__ import annotations

import configparser
import os
import zipfile
from pathlib import Path

from packaging_layers import OLD_TOP_LEVEL_NAMES
from packaging_venv import build_source


def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def dist_info_text(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as zf:
        (path,) = [n for n in zf.namelist() if n.endswith(f".dist-info/{name}")]
        return zf.read(path).decode()


def package_files(wheel: Path) -> set[str]:
    """Every file under the built tree's ledgerflow/, part symlinks followed, as wheel paths."""
    source = build_source(wheel)
    found = set()
    for folder, dirs, files in os.walk(source / "ledgerflow", followlinks=True):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        rel = Path(folder).relative_to(source)
        found |= {(rel / f).as_posix() for f in files if not f.endswith(".pyc")}
    return found


def test_wheel_puts_only_ledgerflow_and_its_dist_info_at_the_top(built_wheel: Path) -> None:
    tops = {name.split("/")[0] for name in wheel_names(built_wheel)}
    version = built_wheel.name.split("-")[1]
    assert tops == {"ledgerflow", f"ledgerflow-{version}.dist-info"}
    assert not tops & OLD_TOP_LEVEL_NAMES


def test_wheel_top_level_txt_names_only_ledgerflow(built_wheel: Path) -> None:
    # pip and importlib.metadata read it to say which import names a
    # distribution owns; a second name here would be a claim on it.
    assert dist_info_text(built_wheel, "top_level.txt").split() == ["ledgerflow"]


def test_wheel_holds_every_file_of_every_part_through_the_symlinks(built_wheel: Path) -> None:
    expected = package_files(built_wheel)
    assert any(p.startswith("ledgerflow/machines/") for p in expected)  # the walk followed links
    missing = sorted(expected - wheel_names(built_wheel))
    assert not missing, (
        "files under the package folders that the wheel leaves out (a data file needs "
        f"[tool.setuptools.package-data] in pyproject.toml): {missing}"
    )


def test_wheel_ships_nothing_the_package_folders_do_not_hold(built_wheel: Path) -> None:
    shipped = {n for n in wheel_names(built_wheel) if n.startswith("ledgerflow/")}
    extra = sorted(shipped - package_files(built_wheel))
    assert not extra, f"the wheel ships files that are not in the repo's package folders: {extra}"


def test_wheel_marks_every_part_as_typed(built_wheel: Path) -> None:
    names = wheel_names(built_wheel)
    assert "ledgerflow/py.typed" in names
    for part in ("contracts", "eventstore", "machines", "replay", "examples"):
        assert f"ledgerflow/{part}/py.typed" in names


def test_wheel_declares_the_console_script_and_the_workflow_entry_points(
    built_wheel: Path,
) -> None:
    entry_points = configparser.ConfigParser()
    entry_points.read_string(dist_info_text(built_wheel, "entry_points.txt"))
    assert dict(entry_points["console_scripts"]) == {"ledgerflow": "ledgerflow.console.cli:main"}
    # The bundled examples claim no workflow name in a user's installation.
    assert not entry_points.has_section("ledgerflow.workflows")
