"""Which part of ledgerflow may import which, checked on the parsed source.

The rule (DESIGN.md, "Layout"): imports point one way,
``console -> replay -> machines -> {contracts, eventstore}`` and
``llm -> machines``; ``contracts`` and ``eventstore`` know nothing of each
other nor of the runtime; every part may import ``ledgerflow.errors``;
``examples`` may import anything, and nothing imports ``examples`` except the
CLI, whose ``demo`` command runs it. The pre-rename top-level names
(``import machines``) are refused everywhere: they resolve only from the repo
root, never from an installed wheel.

Every ``import`` and ``from ... import`` counts wherever it stands (module
level, inside a function, under ``if TYPE_CHECKING:``, in ``try``), relative
ones resolved against the importing module, and so do
``importlib.import_module("...")`` / ``__import__("...")`` calls with a
literal name. A text search would miss the relative and the multi-line ones::

    >>> (v,) = check_source("ledgerflow.contracts.bad", "from ..machines import Workflow")
    >>> v.imported, v.rule
    ('ledgerflow.machines', "'contracts' may import only errors (besides itself)")
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "EXAMPLES_IMPORTED_ONLY_BY",
    "KNOWN_PARTS",
    "MAY_IMPORT",
    "OLD_TOP_LEVEL_NAMES",
    "Violation",
    "check_source",
    "check_tree",
    "imported_names",
    "iter_modules",
    "part_of",
    "parts_under",
]

ROOT = "ledgerflow"

# part -> the other parts it may import. "root" is the ledgerflow/__init__.py
# facade: a part importing it would import every other part (and a cycle).
MAY_IMPORT: dict[str, frozenset[str]] = {
    "errors": frozenset(),
    "contracts": frozenset({"errors"}),
    "eventstore": frozenset({"errors"}),
    "machines": frozenset({"errors", "contracts", "eventstore"}),
    "replay": frozenset({"errors", "contracts", "eventstore", "machines", "examples"}),
    "llm": frozenset({"errors", "contracts", "eventstore", "machines"}),
    "console": frozenset({"errors", "contracts", "eventstore", "machines", "replay"}),
    "examples": frozenset(
        {"root", "errors", "contracts", "eventstore", "machines", "replay", "llm"}
    ),
    "root": frozenset({"errors", "contracts", "eventstore", "machines", "replay"}),
}

# The demo command lives in the CLI; no library module may depend on a demo.
EXAMPLES_IMPORTED_ONLY_BY = frozenset({"ledgerflow.replay.cli"})

# The folders' names before they moved under one namespace: importable only
# when the repo root happens to be on sys.path, and then they shadow (or are
# shadowed by) PyContracts' ``contracts`` and the user's own modules.
OLD_TOP_LEVEL_NAMES = frozenset(
    {"contracts", "eventstore", "machines", "replay", "examples", "llm", "console"}
)


@dataclass(frozen=True)
class Violation:
    """One import that breaks the layering, with where it stands."""

    module: str
    line: int
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.module} line {self.line} imports {self.imported}: {self.rule}"


KNOWN_PARTS = frozenset(MAY_IMPORT) - {"root"}


def part_of(module: str, parts: frozenset[str] = KNOWN_PARTS) -> str | None:
    """The part of ledgerflow a dotted name belongs to, or None outside ledgerflow.

    ``parts`` are the names directly under ``ledgerflow/`` (sub-packages and
    ``errors``); any other name there is an attribute of the facade, "root"
    (``from ledgerflow import Workflow`` gives ``ledgerflow.Workflow``).

    >>> part_of("ledgerflow.machines.runtime"), part_of("ledgerflow.Plan"), part_of("pydantic")
    ('machines', 'root', None)
    """
    comps = module.split(".")
    if comps[0] != ROOT:
        return None
    return comps[1] if len(comps) > 1 and comps[1] in parts else "root"


def _package_of(module: str, *, is_package: bool) -> list[str]:
    comps = module.split(".")
    return comps if is_package else comps[:-1]


def _resolve_from(node: ast.ImportFrom, module: str, *, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = _package_of(module, is_package=is_package)
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join([*base, node.module] if node.module else base)


def _literal_import_call(node: ast.Call) -> str | None:
    func = node.func
    name = (
        func.attr if isinstance(func, ast.Attribute) else func.id
        if isinstance(func, ast.Name) else ""
    )
    if name not in {"import_module", "__import__"} or not node.args:
        return None
    first = node.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    return None


def imported_names(
    source: str, module: str, *, is_package: bool = False
) -> Iterator[tuple[int, str]]:
    """Every (line, absolute dotted name) the source imports, anywhere in it.

    ``from ledgerflow import machines, Workflow`` yields ``ledgerflow.machines``
    and ``ledgerflow.Workflow``, so that a part imported through its parent
    is seen as that part.
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(node, module, is_package=is_package)
            if base == ROOT:
                for alias in node.names:
                    yield node.lineno, f"{ROOT}.{alias.name}"
            else:
                yield node.lineno, base
        elif isinstance(node, ast.Call) and (target := _literal_import_call(node)):
            yield node.lineno, target


def _rule_broken(module: str, imported: str, parts: frozenset[str]) -> str | None:
    top = imported.split(".", maxsplit=1)[0]
    if top in OLD_TOP_LEVEL_NAMES:
        return (
            f"'{top}' is the folder's name, not an importable package once installed; "
            f"import ledgerflow.{imported} instead"
        )
    target = part_of(imported, parts)
    source = part_of(module, parts)
    if target is None or source is None or target == source:
        return None
    if source not in MAY_IMPORT:
        return f"part '{source}' has no rule yet; add it to MAY_IMPORT in {__name__}"
    if target == "examples" and module not in EXAMPLES_IMPORTED_ONLY_BY:
        return "only the CLI's demo command may import the examples"
    allowed = MAY_IMPORT[source]
    if target not in allowed:
        listed = ", ".join(sorted(allowed)) or "nothing"
        return f"'{source}' may import only {listed} (besides itself)"
    return None


def check_source(
    module: str,
    source: str,
    *,
    is_package: bool = False,
    parts: frozenset[str] = KNOWN_PARTS,
) -> list[Violation]:
    """The layering violations in one module's source (pure: no file, no import)."""
    found = []
    for line, imported in imported_names(source, module, is_package=is_package):
        rule = _rule_broken(module, imported, parts)
        if rule is not None:
            found.append(Violation(module=module, line=line, imported=imported, rule=rule))
    return found


def iter_modules(package_dir: Path) -> Iterator[tuple[str, Path, bool]]:
    """(dotted name, file, is_package) of every module under ``package_dir``.

    Symlinked sub-folders are followed: ``ledgerflow/machines`` is a link to
    the repo's ``machines/`` folder, and that is what a wheel ships.
    """
    for folder, dirs, files in os.walk(package_dir, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        rel = Path(folder).relative_to(package_dir.parent)
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            if name == "__init__.py":
                yield ".".join(rel.parts), Path(folder) / name, True
            else:
                yield ".".join([*rel.parts, name[:-3]]), Path(folder) / name, False


def parts_under(package_dir: Path) -> frozenset[str]:
    """The parts a package folder holds: its sub-packages and top modules but ``__init__``."""
    return frozenset(
        entry.name.removesuffix(".py")
        for entry in package_dir.iterdir()
        if (entry.is_dir() and (entry / "__init__.py").exists())
        or (entry.suffix == ".py" and entry.name != "__init__.py")
    )


def check_tree(package_dir: Path) -> list[Violation]:
    """The layering violations in every module under ``package_dir``."""
    parts = parts_under(package_dir)
    found: list[Violation] = []
    for module, path, is_package in iter_modules(package_dir):
        source = path.read_text(encoding="utf-8")
        found += check_source(module, source, is_package=is_package, parts=parts)
    return found
