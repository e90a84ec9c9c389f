"""The in-process workflow registry: a workflow's stable name -> its code.

A run records its workflow's name (``RunStarted.workflow``), and resuming or
verifying it needs the code back. Every :class:`~ledgerflow.Workflow`
registers itself under its name when it is constructed, so importing the
module that defines it is enough; :func:`register` pins one explicitly.

Name clashes are decided so that the wrong code is never picked silently:

- an explicit :func:`register` wins over workflows that merely exist;
  registering a *different* workflow under a name already pinned raises
  :class:`WorkflowNameClashError` (unless ``replace=True``); registering the
  same one again does nothing;
- workflows that only registered themselves are held weakly (a throwaway
  one, in a test or a notebook, disappears with its last reference); when two
  live ones share a name, :func:`registered` reports the name as ambiguous and
  the lookup goes on to the entry points and the recorded reference
  (:func:`ledgerflow.machines.loader.find_workflow`).

Example::

    wf = Workflow("billing", goal=Invoice)   # registered as "billing"
    register(wf)                             # pinned: wins over any other "billing"
    assert registered("billing").workflow is wf
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ledgerflow.machines.errors import WorkflowDefinitionError

if TYPE_CHECKING:
    from ledgerflow.machines.workflow import Workflow

__all__ = [
    "Lookup",
    "WorkflowNameClashError",
    "forget",
    "pinned",
    "register",
    "registered",
    "unregister",
]

_pinned: dict[str, Workflow] = {}
_seen: dict[str, list[weakref.ref[Workflow]]] = {}


class WorkflowNameClashError(WorkflowDefinitionError):
    """Two different workflows were registered explicitly under one name."""

    def __init__(self, name: str, existing: Workflow, new: Workflow) -> None:
        self.name = name
        self.existing = existing
        self.new = new
        super().__init__(
            f"Workflow name '{name}' is already registered to the workflow defined in "
            f"module '{existing.module}', so the one from '{new.module}' cannot take it; "
            "a run records only the name, so give one of them another name "
            "(or pass replace=True to register() on purpose)."
        )


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the registry holds for a name: one workflow, or several candidates."""

    name: str
    workflow: Workflow | None
    candidates: tuple[Workflow, ...] = ()

    @property
    def ambiguous(self) -> bool:
        return self.workflow is None and len(self.candidates) > 1

    def at_ref(self, ref: str) -> Workflow | None:
        """The candidate importable from ``ref`` (checked in ``sys.modules``, no import)."""
        if not ref:
            return None
        found = [wf for wf in self.candidates if wf.ref == ref]
        return found[0] if len(found) == 1 else None


def register(workflow: Workflow, *, replace: bool = False) -> Workflow:
    """Pin ``workflow`` as the code for its name in this process; returns it.

    Example::

        register(billing_wf)   # resume("...") of any "billing" run uses it
    """
    existing = _pinned.get(workflow.name)
    if existing is not None and existing is not workflow and not replace:
        raise WorkflowNameClashError(workflow.name, existing, workflow)
    _pinned[workflow.name] = workflow
    return workflow


def unregister(name: str) -> None:
    """Forget every workflow registered under ``name`` (pinned or not)."""
    _pinned.pop(name, None)
    _seen.pop(name, None)


def forget(workflow: Workflow) -> None:
    """Drop this one workflow from the registry (a placeholder must never be found)."""
    if _pinned.get(workflow.name) is workflow:
        del _pinned[workflow.name]
    refs = _seen.get(workflow.name, [])
    refs[:] = [r for r in refs if r() is not None and r() is not workflow]


def note_constructed(workflow: Workflow) -> None:
    """Called by ``Workflow`` itself: remember it, weakly, under its name."""
    refs = _seen.setdefault(workflow.name, [])
    refs[:] = [r for r in refs if r() is not None]
    refs.append(weakref.ref(workflow))


def pinned(name: str) -> Workflow | None:
    """The workflow ``register()`` pinned for ``name``, if any."""
    return _pinned.get(name)


def registered(name: str) -> Lookup:
    """The workflow registered under ``name``: the pinned one, else the only live one."""
    pinned = _pinned.get(name)
    if pinned is not None:
        return Lookup(name, pinned, (pinned,))
    live = tuple(wf for wf in (r() for r in _seen.get(name, ())) if wf is not None)
    if len(live) == 1:
        return Lookup(name, live[0], live)
    return Lookup(name, None, live)
