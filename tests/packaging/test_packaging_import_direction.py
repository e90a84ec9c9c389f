"""Imports point one way, checked on every module's parsed source (not a text search).

``replay -> machines -> {contracts, eventstore}``; contracts and eventstore
know nothing of each other nor of the runtime; nothing but the CLI's demo
imports the examples. The rules and the checker are in ``packaging_layers``;
these tests run it over the real tree and prove it catches planted breaks.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging_layers import (
    MAY_IMPORT,
    OLD_TOP_LEVEL_NAMES,
    check_source,
    check_tree,
    imported_names,
    iter_modules,
    parts_under,
)

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "ledgerflow"


def test_every_module_of_every_part_imports_only_downwards() -> None:
    violations = check_tree(PACKAGE)
    assert not violations, "layering broken:\n" + "\n".join(map(str, violations))


def test_checker_walks_every_part_through_the_symlinks() -> None:
    # Guard against a vacuous pass: a walk that does not follow the
    # ledgerflow/<part> symlinks would find two modules and no violation.
    parts = {module.split(".")[1] for module, _, _ in iter_modules(PACKAGE) if "." in module}
    assert {"contracts", "eventstore", "machines", "replay", "examples", "errors"} <= parts
    assert sum(1 for _ in iter_modules(PACKAGE)) > 40


def test_every_part_under_ledgerflow_has_a_layering_rule() -> None:
    missing = parts_under(PACKAGE) - set(MAY_IMPORT)
    assert not missing, f"add a rule to packaging_layers.MAY_IMPORT for: {sorted(missing)}"


def test_every_top_level_package_folder_is_linked_into_the_namespace() -> None:
    # A new top-level folder that is not linked from ledgerflow/ would be
    # left out of the wheel (or, worse, installed beside it under its own name).
    folders = {
        entry.name
        for entry in REPO.iterdir()
        if entry.is_dir() and (entry / "__init__.py").exists()
    } - {"benchmarks", "ledgerflow", "tests"}
    linked = {entry.name for entry in PACKAGE.iterdir() if entry.is_symlink()}
    assert folders == linked
    for name in linked:
        assert (PACKAGE / name).resolve() == (REPO / name).resolve()


PLANTED = [
    pytest.param(
        "ledgerflow.contracts.bad",
        "from ledgerflow.machines.workflow import Workflow\n",
        "ledgerflow.machines.workflow",
        id="contracts-imports-machines-absolute",
    ),
    pytest.param(
        "ledgerflow.contracts.bad",
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from ..eventstore import Envelope\n",
        "ledgerflow.eventstore",
        id="contracts-imports-eventstore-relative-under-type-checking",
    ),
    pytest.param(
        "ledgerflow.eventstore.bad",
        "def late() -> None:\n    import ledgerflow.contracts.plan\n",
        "ledgerflow.contracts.plan",
        id="eventstore-imports-contracts-inside-a-function",
    ),
    pytest.param(
        "ledgerflow.machines.bad",
        "from ledgerflow import replay\n",
        "ledgerflow.replay",
        id="machines-imports-replay-through-the-parent",
    ),
    pytest.param(
        "ledgerflow.machines.bad",
        "try:\n    from ledgerflow.examples.travel import wf\nexcept ImportError:\n    pass\n",
        "ledgerflow.examples.travel",
        id="machines-imports-the-examples",
    ),
    pytest.param(
        "ledgerflow.replay.verify",
        "from ledgerflow.examples import travel\n",
        "ledgerflow.examples",
        id="replay-module-other-than-the-cli-imports-the-examples",
    ),
    pytest.param(
        "ledgerflow.contracts.bad",
        "from ledgerflow import LedgerflowError\n",
        "ledgerflow.LedgerflowError",
        id="contracts-imports-the-facade",
    ),
    pytest.param(
        "ledgerflow.machines.bad",
        "import machines.runtime\n",
        "machines.runtime",
        id="old-top-level-name",
    ),
    pytest.param(
        "ledgerflow.eventstore.bad",
        "import importlib\nmod = importlib.import_module('ledgerflow.machines.decide')\n",
        "ledgerflow.machines.decide",
        id="eventstore-imports-machines-by-import-module",
    ),
    pytest.param(
        "ledgerflow.eventstore",
        "from .. import machines\n",
        "ledgerflow.machines",
        id="package-init-relative-to-its-parent",
    ),
    pytest.param(
        "ledgerflow.errors",
        "from ledgerflow.contracts import Plan\n",
        "ledgerflow.contracts",
        id="errors-imports-anything",
    ),
]


@pytest.mark.parametrize(("module", "source", "imported"), PLANTED)
def test_checker_catches_a_planted_violation(module: str, source: str, imported: str) -> None:
    is_package = module == "ledgerflow.eventstore"
    violations = check_source(module, source, is_package=is_package)
    assert [v.imported for v in violations] == [imported]
    assert str(violations[0]).startswith(f"{module} line ")


ALLOWED = [
    pytest.param("ledgerflow.machines.ok", "from ledgerflow.contracts import Plan\n",
                 id="machines-imports-contracts"),
    pytest.param("ledgerflow.machines.ok", "from ..eventstore.envelope import Envelope\n",
                 id="machines-imports-eventstore-relative"),
    pytest.param("ledgerflow.replay.ok", "from ledgerflow.machines import Orchestrator\n",
                 id="replay-imports-machines"),
    pytest.param("ledgerflow.contracts.ok", "from ledgerflow.errors import LedgerflowError\n",
                 id="contracts-imports-errors"),
    pytest.param("ledgerflow.contracts.ok", "from .plan import Plan\nimport pydantic\n",
                 id="contracts-imports-itself-and-third-party"),
    pytest.param("ledgerflow.replay.cli", "from ledgerflow.examples.travel import wf\n",
                 id="cli-demo-imports-the-examples"),
    pytest.param("ledgerflow.examples.x", "from ledgerflow import Workflow, open_store\n",
                 id="examples-import-the-facade"),
    pytest.param("ledgerflow", "from ledgerflow.machines import Workflow\n",
                 id="facade-imports-machines"),
]


@pytest.mark.parametrize(("module", "source"), ALLOWED)
def test_checker_accepts_an_import_that_points_downwards(module: str, source: str) -> None:
    assert check_source(module, source, is_package=module == "ledgerflow") == []


def test_relative_import_two_levels_up_resolves_to_the_sibling_part() -> None:
    names = list(imported_names("from ...machines import x", "ledgerflow.replay.sub.mod"))
    assert names == [(1, "ledgerflow.machines")]


def test_tests_and_benchmarks_never_import_the_old_top_level_names() -> None:
    # They run from the repo root, where ``import machines`` would still work
    # and hide that an installed ledgerflow has no such package.
    offenders = []
    for folder in ("tests", "benchmarks"):
        for path in sorted((REPO / folder).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            for line, name in imported_names(source, "outside"):
                if name.split(".")[0] in OLD_TOP_LEVEL_NAMES:
                    offenders.append(f"{path.relative_to(REPO)} line {line} imports {name}")
    assert not offenders, "\n".join(offenders)
