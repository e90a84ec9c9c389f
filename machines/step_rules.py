"""Pure rules about journaled steps: identity, budget refusal, and what a crash leaves unknown.

Named so each safety rule reads as what it protects, in the decider and in the
runtime alike (:mod:`ledgerflow.machines.steps`).

Example::

    >>> request_hash("search", b'{"args":["Lisbon"],"kwargs":{}}')[:12]
    '14e53ef130a3'
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from ledgerflow.machines.state import RunState
from ledgerflow.machines.step_events import StepRecorded, StepStarted

__all__ = [
    "PLANNER",
    "deadline_left_s",
    "diverging_here_could_repeat_a_side_effect",
    "open_side_effect_step",
    "request_hash",
    "step_key",
    "step_refused_for_budget",
]


#: The task id the planner's steps are recorded under (no plan task may have it).
PLANNER = "$planner"


def request_hash(name: str, request_json: bytes) -> str:
    """The identity of a step's request: its name and its request as the log holds it.

    A resumed attempt and an offline replay both find a recorded answer by it.
    """
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass"))
    digest.update(b"\x00")
    digest.update(request_json)
    return digest.hexdigest()


def step_key(name: str, digest: str) -> str:
    """The key of a side effect across attempts: the same step asked with the same request."""
    return f"{name}\x1f{digest}"


def open_side_effect_step(steps: dict[int, StepRecorded | StepStarted]) -> StepStarted | None:
    """The side-effecting step of an attempt that started and has no recorded outcome.

    Whatever ended the attempt (a crash, a lost lease, a timeout), whether
    that step acted is unknown, so the attempt must not run again.
    """
    for index in sorted(steps, reverse=True):
        step = steps[index]
        if isinstance(step, StepStarted):
            return step
    return None


def diverging_here_could_repeat_a_side_effect(
    recorded: dict[int, StepRecorded | StepStarted], index: int
) -> bool:
    """Whether going live at ``index``, past the recorded steps from there on, could act twice.

    A resumed attempt that asks for a different step than the log recorded
    (its code or input changed) leaves the rest of the recording unused: safe
    for steps free of side effects, never for a recorded side effect.
    """
    return any(step.side_effect if isinstance(step, StepRecorded) else True
               for at, step in recorded.items() if at >= index)


def deadline_left_s(state: RunState, now: datetime) -> float | None:
    """Seconds left before the run's deadline (``None``: it has none)."""
    if state.deadline_s is None or not state.started_at:
        return None
    started = datetime.fromisoformat(state.started_at)
    return started.timestamp() + state.deadline_s - now.timestamp()


def step_refused_for_budget(state: RunState, now: datetime) -> str | None:
    """Why a live step may not be called now, or ``None`` if the run's budget allows it.

    Example::

        reason = step_refused_for_budget(state, clock())
        # "The run's cost budget of 0.05 is spent (0.0512)."
    """
    cost_spent = state.max_cost is not None and (
        state.cost >= state.max_cost or state.budget_exhausted == "max_cost")
    if cost_spent:
        return f"The run's cost budget of {state.max_cost:.4g} is spent ({state.cost:.4g})."
    left = deadline_left_s(state, now)
    if state.budget_exhausted == "deadline" or (left is not None and left <= 0):
        return f"The run's deadline of {state.deadline_s:g}s passed."
    return None
