"""The run and task state machines, defined once on ``transitions``.

This is the only module that imports ``transitions``. Each machine is one
shared ``Machine`` with no models attached: it is the single source of the
states and triggers (and can draw its diagram), and :data:`RUN_TABLE` /
:data:`TASK_TABLE` are compiled from it into a ``(state, trigger) ->
destination`` dict that :func:`ledgerflow.machines.evolve.evolve` consults.

Why not a model per task: a ``Machine`` per task costs ~57 µs, and
``add_model`` on a shared machine grows with the number of models (128 µs each
at 20,000, quadratic overall), while a dict lookup costs ~0.1 µs (all
measured on transitions 0.9.3, on this project's 2-core benchmark machine).
A 10,000-task run and a million-event replay would be dominated by the
library instead of the work.

Example::

    >>> TASK_TABLE[(TaskStatus.READY, "dispatch")]
    <TaskStatus.DISPATCHED: 'dispatched'>
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

from transitions import Machine

__all__ = [
    "RUN_MACHINE",
    "RUN_TABLE",
    "TASK_MACHINE",
    "TASK_TABLE",
    "RunStatus",
    "TaskStatus",
    "allowed_sources",
    "compile_table",
]


class RunStatus(StrEnum):
    """Where a run is in its life."""

    CREATED = "created"
    #: Submitted for the worker pool; no worker has started it yet.
    QUEUED = "queued"
    PLANNING = "planning"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _RUN_TERMINAL


_RUN_TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class TaskStatus(StrEnum):
    """Where a task is in its life."""

    PENDING = "pending"
    READY = "ready"
    DISPATCHED = "dispatched"
    VALIDATING = "validating"
    RETRY_WAIT = "retry_wait"
    ESCALATED = "escalated"
    SUCCEEDED = "succeeded"
    ABANDONED = "abandoned"
    SKIPPED = "skipped"

    @property
    def terminal(self) -> bool:
        return self in _TASK_TERMINAL


_TASK_TERMINAL = frozenset({TaskStatus.SUCCEEDED, TaskStatus.ABANDONED, TaskStatus.SKIPPED})

S = TypeVar("S", bound=StrEnum)
R = RunStatus
T = TaskStatus

# The transition tables as data: trigger, sources, destination.
_RUN_TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "submit", "source": R.CREATED, "dest": R.QUEUED},
    {"trigger": "start", "source": [R.CREATED, R.QUEUED], "dest": R.PLANNING},
    {"trigger": "accept_plan", "source": R.PLANNING, "dest": R.RUNNING},
    {"trigger": "reject_plan", "source": R.PLANNING, "dest": R.FAILED},
    {"trigger": "wait", "source": R.RUNNING, "dest": R.WAITING},
    # A pool run that waited is queued again by a resolution a worker applies.
    {"trigger": "requeue", "source": R.WAITING, "dest": R.QUEUED},
    {"trigger": "resume", "source": [R.WAITING, R.QUEUED], "dest": R.RUNNING},
    {"trigger": "complete", "source": R.RUNNING, "dest": R.COMPLETED},
    {"trigger": "fail", "source": [R.PLANNING, R.RUNNING, R.WAITING], "dest": R.FAILED},
    {
        "trigger": "cancel",
        "source": [R.CREATED, R.QUEUED, R.PLANNING, R.RUNNING, R.WAITING],
        "dest": R.CANCELLED,
    },
]

_TASK_TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "make_ready", "source": [T.PENDING, T.ESCALATED], "dest": T.READY},
    # dispatched -> dispatched is the re-dispatch of an attempt whose outcome
    # was lost in a crash (same idempotency key).
    {"trigger": "dispatch", "source": [T.READY, T.RETRY_WAIT, T.DISPATCHED], "dest": T.DISPATCHED},
    {"trigger": "receive", "source": T.DISPATCHED, "dest": T.VALIDATING},
    {"trigger": "schedule_retry", "source": [T.DISPATCHED, T.VALIDATING], "dest": T.RETRY_WAIT},
    {
        "trigger": "escalate",
        "source": [T.READY, T.DISPATCHED, T.VALIDATING, T.RETRY_WAIT],
        "dest": T.ESCALATED,
    },
    {"trigger": "succeed", "source": [T.VALIDATING, T.ESCALATED], "dest": T.SUCCEEDED},
    {"trigger": "abandon", "source": T.ESCALATED, "dest": T.ABANDONED},
    {"trigger": "skip", "source": T.PENDING, "dest": T.SKIPPED},
]


def _machine(
    name: str, states: type[StrEnum], initial: StrEnum, table: list[dict[str, Any]]
) -> Any:
    return Machine(
        model=None,
        name=name,
        states=[s.value for s in states],
        transitions=[
            {
                "trigger": t["trigger"],
                "source": [s.value for s in t["source"]]
                if isinstance(t["source"], list)
                else t["source"].value,
                "dest": t["dest"].value,
            }
            for t in table
        ],
        initial=initial.value,
        auto_transitions=False,
    )


RUN_MACHINE: Any = _machine("run", RunStatus, RunStatus.CREATED, _RUN_TRANSITIONS)
TASK_MACHINE: Any = _machine("task", TaskStatus, TaskStatus.PENDING, _TASK_TRANSITIONS)


def compile_table(machine: Any, states: type[S]) -> dict[tuple[S, str], S]:
    """Derive the ``(state, trigger) -> destination`` lookup from a machine."""
    table: dict[tuple[S, str], S] = {}
    for trigger, event in machine.events.items():
        for source, transitions in event.transitions.items():
            for transition in transitions:
                table[(states(source), trigger)] = states(transition.dest)
    return table


RUN_TABLE: dict[tuple[RunStatus, str], RunStatus] = compile_table(RUN_MACHINE, RunStatus)
TASK_TABLE: dict[tuple[TaskStatus, str], TaskStatus] = compile_table(TASK_MACHINE, TaskStatus)


def allowed_sources(table: dict[tuple[S, str], S], trigger: str) -> list[S]:
    """The states a trigger may fire from, for error messages."""
    return [src for (src, trig) in table if trig == trigger]
