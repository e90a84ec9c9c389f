"""Finding a workflow's code from the ``module:attribute`` a run recorded."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from pydantic import BaseModel

from ledgerflow.machines.errors import WorkflowDefinitionError
from ledgerflow.machines.workflow import Workflow

__all__ = ["load_workflow"]


class _Empty(BaseModel):
    """Goal of a placeholder workflow for runs whose code is not at hand."""


def load_workflow(ref: str, name: str = "", *, required: bool = True) -> Workflow:
    """Import ``module:attribute`` and check it is a :class:`Workflow`.

    The current directory is importable, as it is for ``python -m``.

    Example::

        wf = load_workflow("ledgerflow.examples.travel:wf")
    """
    if not ref:
        if not required:
            return Workflow(name or "unknown", goal=_Empty)
        raise WorkflowDefinitionError(
            f"The run of workflow '{name}' did not record where its code lives; "
            "pass it as MODULE:WORKFLOW (--workflow on the CLI)."
        )
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
    workflow = getattr(module, attr, None)
    if not isinstance(workflow, Workflow):
        raise WorkflowDefinitionError(
            f"'{ref}' is not a ledgerflow Workflow (found {type(workflow).__name__})."
        )
    return workflow
