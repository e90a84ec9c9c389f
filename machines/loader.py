"""Finding a workflow's code for a recorded run, wherever its module lives today.

A run records its workflow's stable name (``RunStarted.workflow``) and, as a
last hint, the ``module:attribute`` it was started from
(``RunStarted.workflow_ref``, upgraded for known moves on decode).
:func:`find_workflow` looks in this order and stops at the first hit:

1. ``override``: what the caller names explicitly (``--workflow`` on the
   CLI, ``workflow=`` in the API), a :class:`Workflow` or ``MODULE:WORKFLOW``;
2. the workflow pinned for that name with ``register(wf)``;
3. the recorded reference, if its module still imports and still holds a
   workflow of that name: that is the code that wrote the run, so no other
   workflow that merely shares the name (a bundled example, another live
   one) may stand in for it;
4. the rest of the in-process registry (:mod:`ledgerflow.machines.registry`):
   the only live workflow of that name, else, among several, none;
5. the entry point group ``ledgerflow.workflows`` (name = ``module:attr``),
   how an installed service publishes its workflows once their modules have
   moved::

       [project.entry-points."ledgerflow.workflows"]
       billing = "billing_service.flows:billing_wf"

If nothing matches, :class:`WorkflowNotFoundError` says what was tried.
"""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Final

from pydantic import BaseModel

from ledgerflow.machines.errors import WorkflowDefinitionError
from ledgerflow.machines.registry import forget, pinned, registered
from ledgerflow.machines.upcasting import upcast_workflow_ref
from ledgerflow.machines.workflow import Workflow

__all__ = ["ENTRY_POINT_GROUP", "WorkflowNotFoundError", "find_workflow", "load_workflow"]

#: The entry point group an installed service names its workflows in.
ENTRY_POINT_GROUP: Final = "ledgerflow.workflows"


class WorkflowNotFoundError(WorkflowDefinitionError):
    """No code was found for a run's workflow; ``tried`` lists where it was looked for."""

    def __init__(self, name: str, tried: list[str]) -> None:
        self.name = name
        self.tried = list(tried)
        super().__init__(
            f"Cannot find the code of workflow '{name}': {'; '.join(tried)}; import or "
            f"register() it, publish it in the '{ENTRY_POINT_GROUP}' entry point group, "
            "or pass it as MODULE:WORKFLOW (--workflow on the CLI)."
        )


class _Empty(BaseModel):
    """Goal of a placeholder workflow for runs whose code is not at hand."""


def _placeholder(name: str) -> Workflow:
    """A workflow with no agents, enough to cancel a run; never found by name later."""
    workflow = Workflow(name, goal=_Empty, module=__name__)
    forget(workflow)
    return workflow


def find_workflow(
    name: str, ref: str = "", *, override: Workflow | str | None = None
) -> Workflow:
    """The code of workflow ``name`` (recorded with ``ref``), looked up as the module says.

    ``ref`` is what a decoded ``RunStarted`` holds, already upcast for known moves.

    Example::

        state = await load_run_state(store, run_id)
        wf = find_workflow(state.workflow, state.workflow_ref)
        wf = find_workflow("travel", override="ledgerflow.examples.travel:wf")
    """
    if isinstance(override, Workflow):
        return override
    if override:
        return import_workflow(override)
    tried: list[str] = []
    found = pinned(name)
    if found is None and ref:
        found = _from_ref(name, ref, tried)
    elif found is None:
        tried.append("the run recorded no MODULE:WORKFLOW")
    if found is None:
        found = _from_registry(name, ref, tried)
    if found is None:
        found = _from_entry_points(name, tried)
    if found is None:
        raise WorkflowNotFoundError(name, tried)
    return found


def _from_registry(name: str, ref: str, tried: list[str]) -> Workflow | None:
    lookup = registered(name)
    if lookup.workflow is not None:
        return lookup.workflow
    if lookup.ambiguous:
        chosen = lookup.at_ref(ref)
        if chosen is not None:
            return chosen
        modules = ", ".join(sorted({wf.module or "?" for wf in lookup.candidates}))
        tried.append(f"{len(lookup.candidates)} workflows named '{name}' exist in this "
                     f"process (modules {modules}) and none was register()ed")
    else:
        tried.append(f"no workflow named '{name}' is registered in this process")
    return None


def _from_entry_points(name: str, tried: list[str]) -> Workflow | None:
    points = {ep.value: ep for ep in entry_points(group=ENTRY_POINT_GROUP, name=name)}
    if not points:
        tried.append(f"no entry point '{name}' in group '{ENTRY_POINT_GROUP}'")
        return None
    if len(points) > 1:
        tried.append(f"entry point '{name}' is declared more than once "
                     f"({', '.join(sorted(points))})")
        return None
    (value, point), = points.items()
    try:
        loaded = point.load()
    except Exception as exc:  # a broken plugin is reported, not raised: say all that was tried
        tried.append(f"entry point '{name}' = '{value}' fails to load ({exc})")
        return None
    if not isinstance(loaded, Workflow):
        tried.append(f"entry point '{name}' = '{value}' is a {type(loaded).__name__}, "
                     "not a Workflow")
        return None
    if loaded.name != name:
        # Published under the wrong name: its decisions would not be this run's.
        tried.append(f"entry point '{name}' = '{value}' holds workflow '{loaded.name}', "
                     f"not '{name}'")
        return None
    return loaded


def _from_ref(name: str, ref: str, tried: list[str]) -> Workflow | None:
    try:
        workflow = import_workflow(ref)
    except WorkflowDefinitionError as exc:
        tried.append(f"the recorded reference '{ref}' does not load ({exc})")
        return None
    if name and workflow.name != name:
        # The attribute now holds some other workflow: its decisions would not be this run's.
        tried.append(f"the recorded reference '{ref}' now holds workflow "
                     f"'{workflow.name}', not '{name}'")
        return None
    return workflow


def import_workflow(ref: str) -> Workflow:
    """Import ``module:attribute`` and check it is a :class:`Workflow`.

    The current directory is importable, as it is for ``python -m``.

    Example::

        wf = import_workflow("ledgerflow.examples.travel:wf")
    """
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise WorkflowDefinitionError(
            f"'{ref}' is not MODULE:WORKFLOW (for example ledgerflow.examples.travel:wf)."
        )
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise WorkflowDefinitionError(f"Cannot import module '{module_name}': {exc}.") from exc
    if not hasattr(module, attr):
        raise WorkflowDefinitionError(
            f"Module '{module_name}' has no attribute '{attr}'; name the Workflow object "
            f"as {module_name}:ATTRIBUTE."
        )
    workflow = getattr(module, attr)
    if not isinstance(workflow, Workflow):
        raise WorkflowDefinitionError(
            f"'{ref}' is not a ledgerflow Workflow (found {type(workflow).__name__})."
        )
    return workflow


def load_workflow(ref: str, name: str = "", *, required: bool = True) -> Workflow:
    """The workflow for a run: by ``name`` when given (:func:`find_workflow`), else ``ref``.

    With a ``name`` (what a run recorded), ``ref`` is the recorded reference,
    tried last; without one, ``ref`` is an explicit ``MODULE:WORKFLOW``. With
    ``required=False`` a run whose code cannot be found gets a placeholder
    workflow (no agents), enough to cancel it.

    Example::

        wf = load_workflow("ledgerflow.examples.travel:wf")
        wf = load_workflow(state.workflow_ref, state.workflow)
    """
    if name:
        try:
            return find_workflow(name, ref)
        except WorkflowNotFoundError:
            if required:
                raise
            return _placeholder(name)
    if not ref:
        if not required:
            return _placeholder("unknown")
        raise WorkflowDefinitionError(
            "The run did not record its workflow's name or where its code lives; "
            "pass it as MODULE:WORKFLOW (--workflow on the CLI)."
        )
    # A ref from the log is upcast once, on decode; this one is typed by a person
    # (`--workflow examples.travel:wf` from 0.1's docs), so it is upcast here.
    return import_workflow(upcast_workflow_ref(ref))
