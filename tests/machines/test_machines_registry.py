"""A run's workflow is found by its recorded name: an explicit override first, then the
in-process registry, then the ``ledgerflow.workflows`` entry points, then the recorded
module; a clash never picks the wrong code silently, and a miss says what was tried."""

from __future__ import annotations

import gc
import itertools
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest
from machines_helpers import Goal

from ledgerflow.examples import travel
from ledgerflow.machines import Workflow, WorkflowDefinitionError, load_workflow
from ledgerflow.machines import loader as loader_module
from ledgerflow.machines.loader import WorkflowNotFoundError, find_workflow
from ledgerflow.machines.registry import (
    WorkflowNameClashError,
    register,
    registered,
    unregister,
)

_names = itertools.count()


@pytest.fixture
def name() -> Iterator[str]:
    """A workflow name no other test uses; forgotten afterwards."""
    fresh = f"registry-test-{next(_names)}"
    yield fresh
    unregister(fresh)


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, wf_name: str) -> str:
    """Write an importable module defining ``wf`` named ``wf_name``; return its ref."""
    (tmp_path / f"{module}.py").write_text(
        "from pydantic import BaseModel\n"
        "from ledgerflow import Workflow\n\n\n"
        "class G(BaseModel):\n    x: int = 0\n\n\n"
        f"wf = Workflow({wf_name!r}, goal=G)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{module}:wf"


def test_a_constructed_workflow_is_found_by_its_name(name: str) -> None:
    wf = Workflow(name, goal=Goal)
    assert find_workflow(name) is wf
    assert load_workflow("", name) is wf


def test_the_override_wins_over_the_registry(name: str) -> None:
    Workflow(name, goal=Goal)
    assert find_workflow(name, override=travel.wf) is travel.wf
    assert find_workflow(name, override="ledgerflow.examples.travel:wf") is travel.wf


def test_registering_another_workflow_under_a_pinned_name_is_refused(name: str) -> None:
    first = register(Workflow(name, goal=Goal))
    register(first)  # the same one again: nothing to decide
    second = Workflow(name, goal=Goal)
    with pytest.raises(WorkflowNameClashError, match=name) as caught:
        register(second)
    assert caught.value.existing is first
    assert find_workflow(name) is first  # the pinned one wins over merely existing ones
    register(second, replace=True)
    assert find_workflow(name) is second


def test_two_live_workflows_of_one_name_are_ambiguous_and_none_is_guessed(name: str) -> None:
    keep = [Workflow(name, goal=Goal), Workflow(name, goal=Goal)]
    assert registered(name).ambiguous
    with pytest.raises(WorkflowNotFoundError, match="2 workflows named") as caught:
        find_workflow(name)
    assert any("entry point" in step for step in caught.value.tried)
    assert len(keep) == 2


def test_an_ambiguous_name_is_settled_by_the_recorded_reference(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = _module(tmp_path, monkeypatch, "registry_settled", name)
    recorded = load_workflow(ref)  # imports it: one of the two live workflows
    other = Workflow(name, goal=Goal)
    assert registered(name).ambiguous
    assert find_workflow(name, ref) is recorded
    assert other is not recorded


def test_a_throwaway_workflow_leaves_the_registry_with_its_last_reference(name: str) -> None:
    keep = Workflow(name, goal=Goal)
    throwaway: Any = Workflow(name, goal=Goal)
    assert registered(name).ambiguous
    del throwaway
    gc.collect()
    assert find_workflow(name) is keep


def test_a_placeholder_for_a_run_whose_code_is_missing_is_never_found_later(name: str) -> None:
    placeholder = load_workflow("", name, required=False)
    assert placeholder.agents == {}
    assert registered(name).workflow is None


def test_an_installed_entry_point_is_loaded_by_name(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = _module(tmp_path, monkeypatch, "registry_service", name)
    point = EntryPoint(name=name, value=ref, group=loader_module.ENTRY_POINT_GROUP)

    def fake_entry_points(*, group: str, name: str) -> list[EntryPoint]:
        return [point] if (group, name) == (point.group, point.name) else []

    monkeypatch.setattr(loader_module, "entry_points", fake_entry_points)
    found = find_workflow(name, "moved_away_long_ago:wf")
    assert found.name == name
    assert found.module == "registry_service"


def test_a_live_workflow_sharing_the_name_never_stands_in_for_the_recorded_module(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The quickstart's "travel" beside the bundled demo's "travel": a run
    # recorded from the user's module is checked against that module only.
    ref = _module(tmp_path, monkeypatch, "registry_users_own", name)
    lookalike = Workflow(name, goal=travel.TripGoal)  # the only other live one
    found = find_workflow(name, ref)
    assert found is not lookalike
    assert found.ref == ref


def test_a_recorded_module_is_the_last_resort(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = _module(tmp_path, monkeypatch, "registry_last_resort", name)
    unregister(name)  # nothing in-process: only the recorded reference is left
    found = find_workflow(name, ref)
    assert (found.name, found.ref) == (name, ref)


def test_a_recorded_module_that_now_holds_another_workflow_is_refused(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = _module(tmp_path, monkeypatch, "registry_repurposed", f"{name}-v2")
    with pytest.raises(WorkflowNotFoundError, match="now holds workflow"):
        find_workflow(name, ref)
    unregister(f"{name}-v2")


def test_a_miss_says_every_place_it_looked(name: str) -> None:
    with pytest.raises(WorkflowNotFoundError) as caught:
        load_workflow("no_such_module_anywhere:wf", name)
    message = str(caught.value)
    assert f"no workflow named '{name}' is registered" in message
    assert "no entry point" in message
    assert "no_such_module_anywhere" in message
    assert "--workflow" in message
    assert caught.value.name == name


def test_an_entry_point_publishing_another_workflow_under_the_name_is_refused(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = _module(tmp_path, monkeypatch, "registry_misnamed_service", f"{name}-other")
    point = EntryPoint(name=name, value=ref, group=loader_module.ENTRY_POINT_GROUP)

    def fake_entry_points(*, group: str, name: str) -> list[EntryPoint]:
        return [point] if (group, name) == (point.group, point.name) else []

    monkeypatch.setattr(loader_module, "entry_points", fake_entry_points)
    with pytest.raises(WorkflowNotFoundError, match=f"holds workflow '{name}-other'"):
        find_workflow(name, "moved_away_long_ago:wf")
    unregister(f"{name}-other")


def test_a_missing_attribute_is_named_not_called_a_non_workflow() -> None:
    with pytest.raises(WorkflowDefinitionError, match="has no attribute 'nope'"):
        load_workflow("ledgerflow.examples.travel:nope")
