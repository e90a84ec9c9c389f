"""The public names are a promise: one import line, and every ``__all__`` tells the truth."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from packaging_layers import iter_modules

import ledgerflow

PUBLIC = {
    "Workflow", "Orchestrator", "Plan", "Task", "open_store", "Budget", "RetryPolicy",
    "AgentContext", "PermanentError", "Resolution", "LedgerflowError",
}

PACKAGE = Path(__file__).resolve().parents[2] / "ledgerflow"
SUBPACKAGES = sorted(
    module for module, _, is_package in iter_modules(PACKAGE) if is_package and "." in module
)


def test_the_public_api_imports_from_one_place() -> None:
    from ledgerflow import (  # noqa: F401, PLC0415 - the import itself is the claim
        AgentContext,
        Budget,
        LedgerflowError,
        Orchestrator,
        PermanentError,
        Plan,
        Resolution,
        RetryPolicy,
        Task,
        Workflow,
        open_store,
    )


def test_ledgerflow_all_is_exactly_the_promised_names_sorted() -> None:
    assert ledgerflow.__all__ == sorted(PUBLIC)


def test_facade_names_are_the_subpackages_own_objects() -> None:
    # A re-export, not a copy: isinstance checks and `except` clauses written
    # against ledgerflow.machines.PermanentError must match ledgerflow.PermanentError.
    from ledgerflow import contracts, errors, eventstore, machines  # noqa: PLC0415

    homes = (contracts, errors, eventstore, machines)
    for name in PUBLIC:
        obj = getattr(ledgerflow, name)
        assert any(getattr(home, name, None) is obj for home in homes), name


def test_every_error_in_the_api_derives_from_ledgerflow_error() -> None:
    assert issubclass(ledgerflow.PermanentError, ledgerflow.LedgerflowError)


def test_subpackages_are_found() -> None:
    assert {"ledgerflow.contracts", "ledgerflow.eventstore", "ledgerflow.machines",
            "ledgerflow.replay", "ledgerflow.examples"} <= set(SUBPACKAGES)


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_subpackage_all_is_sorted_and_every_name_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, list), f"{name} has no __all__ list"
    assert exported == sorted(exported), f"{name}.__all__ is not sorted"
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"
