"""Stepping through a run: each event with the move it made and what changed.

Example::

    for step in walk(run_id, envelopes):
        print(step.seq, step.type, step.machine, step.move, step.changes)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ledgerflow.eventstore import Envelope
from ledgerflow.machines import Event, RunState, evolve
from ledgerflow.machines.events import TaskEvent
from ledgerflow.replay.timeline import LogRow, decode_log

__all__ = ["Step", "is_trouble", "walk"]

_TROUBLE = frozenset({
    "AgentFailed", "OutputRejected", "TaskEscalated", "PlanRejected", "BudgetExhausted",
    "RunFailed", "TaskAbandoned", "TaskSkipped", "RunCancelled",
})


@dataclass(frozen=True, slots=True)
class Step(LogRow):
    """One event of a run, as in the decision log, and its effect on the state."""

    changes: tuple[str, ...] = ()

    @property
    def move(self) -> str:
        return f"{self.src} -> {self.dst}" if self.dst else "(no move)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "at": self.at.isoformat(), "type": self.type,
            "machine": self.machine, "trigger": self.trigger, "src": self.src, "dst": self.dst,
            "reason": self.reason, "changes": list(self.changes),
        }


def is_trouble(step: Step) -> bool:
    """A failure or an escalation: where ``f`` in the stepper stops."""
    return step.type in _TROUBLE


def _run_view(state: RunState) -> dict[str, Any]:
    return {
        "status": state.status.value,
        "retries_used": state.retries_used,
        "cost": round(state.cost, 6),
        "tokens": state.tokens,
        "budget_exhausted": state.budget_exhausted,
        "escalations": sorted(state.escalations),
        "tasks": len(state.tasks),
    }


def _task_view(state: RunState, task_id: str) -> dict[str, Any]:
    task = state.tasks.get(task_id)
    return task.to_dict() if task is not None else {}


def _diff(prefix: str, before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    out = []
    for key, new in after.items():
        old = before.get(key)
        if old != new:
            out.append(f"{prefix}{key}: {_short(old)} -> {_short(new)}")
    return out


def _short(value: Any, limit: int = 70) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


def walk(run_id: str, envelopes: Sequence[Envelope]) -> Iterator[Step]:
    """Fold the log event by event, yielding each step with a compact diff."""
    state = RunState(run_id=run_id)
    for env, event in decode_log(run_id, envelopes):
        yield _step(state, env, event)


def _step(state: RunState, env: Envelope, event: Event) -> Step:
    task_id = event.task_id if isinstance(event, TaskEvent) else None
    run_before = _run_view(state)
    task_before = _task_view(state, task_id) if task_id else {}
    evolve(state, event)
    changes = _diff("run ", run_before, _run_view(state))
    if task_id:
        changes += _diff(f"task {task_id} ", task_before, _task_view(state, task_id))
    return Step(
        seq=env.seq, at=env.at, type=event.type, machine=event.machine,
        trigger=event.trigger or "", src=event.src, dst=event.dst, reason=event.reason,
        event=event, changes=tuple(changes),
    )
