"""Build a task's input from the goal and upstream outputs (pure, no validation)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ledgerflow.contracts.errors import ReferenceResolutionError
from ledgerflow.contracts.plan import GOAL, Task
from ledgerflow.contracts.references import parse_reference, unescape

__all__ = ["resolve_inputs"]


def resolve_inputs(
    task: Task,
    goal: Mapping[str, Any],
    outputs: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """Exactly ``task``'s input dict, with every reference replaced by its value.

    ``goal`` and ``outputs`` (task id -> output) are JSON-mode dicts
    (``model.model_dump(mode="json")``). Only the goal and tasks in
    ``task.needs`` may be read, the same rule :func:`check_plan` enforces.
    Raises :class:`ReferenceResolutionError` naming what was missing.

    >>> t = Task(id="book", agent="book", needs=["price"],
    ...          inputs={"amount": "$price.total", "note": "$$5 off", "to": "$goal.destination"})
    >>> resolve_inputs(t, {"destination": "Lisbon", "passengers": 2}, {"price": {"total": 310.0}})
    {'amount': 310.0, 'note': '$5 off', 'to': 'Lisbon'}
    """
    return {
        field: _resolve(value, task, field, goal, outputs) for field, value in task.inputs.items()
    }


def _resolve(
    value: Any,
    task: Task,
    field: str,
    goal: Mapping[str, Any],
    outputs: Mapping[str, Mapping[str, Any]],
) -> Any:
    if isinstance(value, str):
        ref = parse_reference(value)
        if ref is None:
            return unescape(value)

        def fail(missing: str) -> ReferenceResolutionError:
            return ReferenceResolutionError(task.id, field, value, missing)

        current: Any
        if ref.source == GOAL:
            current = goal
        elif ref.source not in task.needs:
            raise fail(f"task {ref.source!r} is not in the needs of task {task.id!r}")
        elif ref.source not in outputs:
            raise fail(f"there is no output of task {ref.source!r}")
        else:
            current = outputs[ref.source]
        walked = [ref.source]
        for segment in ref.path:
            where = "$" + ".".join(walked)
            if isinstance(current, Mapping):
                if segment not in current:
                    keys = ", ".join(sorted(map(str, current))) or "none"
                    raise fail(f"{where} has no key {segment!r} (keys: {keys})")
                current = current[segment]
            elif isinstance(current, list | tuple):
                if not segment.isdigit():
                    raise fail(f"{where} is a list, so {segment!r} must be a numeric index")
                if int(segment) >= len(current):
                    raise fail(f"{where} has {len(current)} items, so index {segment} is missing")
                current = current[int(segment)]
            else:
                raise fail(f"{where} is {type(current).__name__}, which has no {segment!r}")
            walked.append(segment)
        # A copy, so an agent that mutates its input cannot alter a recorded output.
        return copy.deepcopy(current)
    if isinstance(value, dict):
        return {k: _resolve(v, task, field, goal, outputs) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_resolve(v, task, field, goal, outputs) for v in value]
    return copy.deepcopy(value)
