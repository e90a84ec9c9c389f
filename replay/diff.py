"""``diff``: where two runs' decisions part, and what differs per task.

Typically a run and its fork, or last month's run and a re-run under new
code. Bookkeeping events (``ForkedFrom``, ``RunResumed``) and prose
(``reason``) are left out of the comparison: only decisions and facts count.

Example::

    d = diff_runs(run_a, envs_a, run_b, envs_b)
    print(d.parted_at, d.task_differences)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ledgerflow.eventstore import Envelope
from ledgerflow.machines import Event, RunState, evolve
from ledgerflow.machines.events import ForkedFrom, RunResumed
from ledgerflow.replay.batches import comparable
from ledgerflow.replay.timeline import decode_log

__all__ = ["RunDiff", "TaskDifference", "diff_runs"]


@dataclass(frozen=True, slots=True)
class TaskDifference:
    task_id: str
    field: str
    a: Any
    b: Any


@dataclass(frozen=True, slots=True)
class RunDiff:
    run_a: str
    run_b: str
    #: (seq in A, seq in B) of the first differing event, or None if the same.
    parted_at: tuple[int | None, int | None] | None
    first_a: Event | None
    first_b: Event | None
    status: tuple[str, str]
    task_differences: list[TaskDifference] = field(default_factory=list)

    @property
    def same(self) -> bool:
        return self.parted_at is None and not self.task_differences


def _decisions(run_id: str, envs: Sequence[Envelope]) -> tuple[list[tuple[int, Event]], RunState]:
    state = RunState(run_id=run_id)
    kept: list[tuple[int, Event]] = []
    for env, event in decode_log(run_id, envs):
        evolve(state, event)
        if not isinstance(event, ForkedFrom | RunResumed):
            kept.append((env.seq, event))
    return kept, state


def diff_runs(
    run_a: str, envs_a: Sequence[Envelope], run_b: str, envs_b: Sequence[Envelope]
) -> RunDiff:
    """Compare two runs' logs decision by decision, then their tasks' end states."""
    a, state_a = _decisions(run_a, envs_a)
    b, state_b = _decisions(run_b, envs_b)
    parted: tuple[int | None, int | None] | None = None
    first_a = first_b = None
    for i in range(max(len(a), len(b))):
        ea = a[i] if i < len(a) else None
        eb = b[i] if i < len(b) else None
        if ea is None or eb is None or comparable(ea[1]) != comparable(eb[1]):
            parted = (ea[0] if ea else None, eb[0] if eb else None)
            first_a = ea[1] if ea else None
            first_b = eb[1] if eb else None
            break
    diffs: list[TaskDifference] = []
    for task_id in list(dict.fromkeys([*state_a.tasks, *state_b.tasks])):
        ta = state_a.tasks.get(task_id)
        tb = state_b.tasks.get(task_id)
        if ta is None or tb is None:
            diffs.append(TaskDifference(task_id, "exists", ta is not None, tb is not None))
            continue
        for name in ("status", "attempt", "output", "last_error"):
            va, vb = getattr(ta, name), getattr(tb, name)
            if va != vb:
                diffs.append(TaskDifference(
                    task_id, name, getattr(va, "value", va), getattr(vb, "value", vb)))
    return RunDiff(run_a, run_b, parted, first_a, first_b,
                   (state_a.status.value, state_b.status.value), diffs)
