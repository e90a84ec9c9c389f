"""Reading a run's steps back: one view per journaled step, its start and outcome joined.

The audit commands (``show``, ``log``, ``replay --step``) and recordings
(:mod:`ledgerflow.machines.recording`) read steps through :func:`steps_of`,
the one place that knows a side-effecting step's request is on its
:class:`StepStarted` and its outcome on the :class:`StepRecorded` after it.

Example::

    views = steps_of((env.seq, decode_event(env.data)) async for env in store.read(run_id))
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ledgerflow.machines import events as ev

__all__ = ["StepView", "step_totals", "steps_of"]


@dataclass(frozen=True, slots=True)
class StepView:
    """One journaled step as the log records it.

    ``outcome_unknown`` marks a side-effecting step that started and
    recorded no outcome; ``seq`` is the event that recorded the outcome
    (or the start, if none).
    """

    task_id: str
    attempt: int
    index: int
    name: str
    request: Any
    request_hash: str
    seq: int
    result: Any = None
    error_type: str = ""
    message: str = ""
    tokens: int = 0
    cost: float = 0.0
    duration_ms: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)
    side_effect: bool = False
    outcome_unknown: bool = False
    #: Steps taken inside this one's function (the next ``nested`` indices).
    nested: int = 0
    #: Recorded where a resumed attempt went live past a differing log: the
    #: attempt's earlier record from this index on was superseded.
    discards_later: bool = False

    @property
    def kind(self) -> str:
        """``llm``, ``tool`` or whatever the step's function said; ``step`` if nothing."""
        return str(self.detail.get("kind") or "step")

    @property
    def label(self) -> str:
        """What the step called: the model or the tool, else the step's name."""
        return str(self.detail.get("model") or self.detail.get("tool") or self.name)


def steps_of(log: Iterable[tuple[int, ev.Event]]) -> list[StepView]:
    """Every step of a run in log order, each start joined with its outcome."""
    views: list[StepView] = []
    open_starts: dict[tuple[str, int, int], tuple[int, ev.StepStarted]] = {}
    at: dict[tuple[str, int, int], int] = {}
    for seq, event in log:
        kind = type(event)
        if kind is ev.StepStarted:
            started: ev.StepStarted = event  # type: ignore[assignment]
            key = (started.task_id, started.attempt, started.index)
            open_starts[key] = (seq, started)
            at[key] = len(views)
            views.append(StepView(
                task_id=started.task_id, attempt=started.attempt, index=started.index,
                name=started.name, request=started.request, request_hash=started.request_hash,
                seq=seq, side_effect=True, outcome_unknown=True,
                discards_later=started.discards_later))
        elif kind is ev.StepRecorded:
            step: ev.StepRecorded = event  # type: ignore[assignment]
            key = (step.task_id, step.attempt, step.index)
            start = open_starts.pop(key, None)
            view = StepView(
                task_id=step.task_id, attempt=step.attempt, index=step.index, name=step.name,
                request=start[1].request if start is not None else step.request,
                request_hash=step.request_hash, seq=seq, result=step.result,
                error_type=step.error_type, message=step.message, tokens=step.tokens,
                cost=step.cost, duration_ms=step.duration_ms, detail=step.detail,
                side_effect=step.side_effect, nested=step.nested,
                discards_later=step.discards_later or (start is not None
                                                      and start[1].discards_later))
            if start is not None:
                views[at[key]] = view
            else:
                views.append(view)
    return views


def step_totals(views: Iterable[StepView]) -> dict[str, Any]:
    """Steps, model calls, tool calls, tokens and cost over ``views``."""
    totals: dict[str, Any] = {"steps": 0, "llm_calls": 0, "tool_calls": 0, "tokens": 0,
                              "cost": 0.0}
    for view in views:
        totals["steps"] += 1
        totals["llm_calls"] += view.kind == "llm"
        totals["tool_calls"] += view.kind == "tool"
        totals["tokens"] += view.tokens
        totals["cost"] += view.cost
    return totals
