"""The public surface of contracts is pinned, documented, and keeps to its layer."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

from ledgerflow import contracts
from ledgerflow.errors import LedgerflowError

MODULES = sorted(m.name for m in pkgutil.iter_modules(contracts.__path__, "ledgerflow.contracts."))


def test_public_names_are_pinned_and_sorted() -> None:
    assert contracts.__all__ == sorted(contracts.__all__)
    assert contracts.__all__ == [
        "AgentContract",
        "ConfidenceContractError",
        "ContractError",
        "InputContractError",
        "OutputVerdict",
        "Plan",
        "PlanProblem",
        "PlanRejectedError",
        "ProblemCode",
        "Reference",
        "ReferenceResolutionError",
        "ReferenceSyntaxError",
        "Task",
        "check_plan",
        "confidence_field",
        "parse_reference",
        "references_in",
        "resolve_inputs",
        "validate_input",
        "validate_output",
    ]


def test_errors_derive_from_the_ledgerflow_root() -> None:
    for name in contracts.__all__:
        obj = getattr(contracts, name)
        if name.endswith("Error"):
            assert issubclass(obj, contracts.ContractError)
    assert issubclass(contracts.ContractError, LedgerflowError)


@pytest.mark.parametrize("name", MODULES)
def test_every_module_declares_all_and_passes_its_doctests(name: str) -> None:
    module = importlib.import_module(name)
    assert hasattr(module, "__all__")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_contracts_imports_nothing_of_the_runtime() -> None:
    # Read the source: sys.modules is shared with other packages' tests.
    for name in MODULES:
        source = importlib.import_module(name).__loader__.get_source(name)  # type: ignore[union-attr]
        for layer in ("eventstore", "machines", "replay"):
            assert f"import {layer}" not in source
            assert f"from {layer}" not in source
