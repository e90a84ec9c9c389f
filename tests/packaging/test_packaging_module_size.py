"""No module of the package over 500 lines: a new maintainer reads one job per file.

Issue 8 item 5 (``machines/runtime.py`` was 707 lines doing four jobs). Tests
and benchmarks are outside the rule; every module a wheel ships is inside it.
"""

from __future__ import annotations

from pathlib import Path

from packaging_layers import iter_modules

PACKAGE = Path(__file__).resolve().parents[2] / "ledgerflow"
MAX_LINES = 500


def line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_module_of_the_package_is_over_500_lines() -> None:
    sizes = {module: line_count(path) for module, path, _ in iter_modules(PACKAGE)}
    assert len(sizes) > 40  # the walk followed the part symlinks
    offenders = sorted((n, m) for m, n in sizes.items() if n > MAX_LINES)
    assert not offenders, "split by job: " + ", ".join(f"{m} ({n} lines)" for n, m in offenders)
