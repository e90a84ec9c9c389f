"""The state of a run, as rebuilt by folding its events.

A :class:`RunState` is what :func:`ledgerflow.machines.evolve` folds events into and what
:func:`ledgerflow.machines.decide` reads. It is plain data (JSON-ready via
:meth:`RunState.to_dict`); counters that make decisions O(1) per event (tasks
per status, unmet dependencies per task, the ready queue) are kept beside it
so that a 10,000-task run never rescans its tasks.

Example::

    >>> state = RunState(run_id="r1")
    >>> state.status
    <RunStatus.CREATED: 'created'>
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ledgerflow.machines.fsm import RunStatus, TaskStatus

if TYPE_CHECKING:
    from ledgerflow.machines.events import ResolutionRequested
    from ledgerflow.machines.step_events import StepRecorded, StepStarted

__all__ = ["Escalation", "RunState", "TaskState"]


@dataclass(slots=True)
class Escalation:
    """An open escalation: why the task is waiting on someone."""

    task_id: str
    kind: str
    reason: str
    candidate: Any = None


@dataclass(slots=True)
class TaskState:
    """One task of the plan and everything the log says about it."""

    id: str
    agent: str
    needs: tuple[str, ...] = ()
    inputs: dict[str, Any] = field(default_factory=dict)
    status: TaskStatus = TaskStatus.PENDING
    attempt: int = 0
    granted_attempts: int = 0
    budget_override: bool = False
    input: dict[str, Any] | None = None
    idempotency_key: str | None = None
    output: dict[str, Any] | None = None
    confidence: float | None = None
    last_error: str | None = None
    resolved_by: str | None = None
    unmet: int = 0
    dependents: list[str] = field(default_factory=list)
    #: Whether an attempt is with the agent right now (dispatched, outcome
    #: not yet recorded): what a crash leaves unknown.
    outstanding: bool = False
    #: The plan's own Task, kept to build inputs without re-creating it per dispatch.
    plan_task: Any = None
    #: The current attempt's journaled steps by index: a StepStarted until its
    #: StepRecorded arrives. A resumed attempt is served from these.
    steps: dict[int, StepRecorded | StepStarted] = field(default_factory=dict)
    #: Side-effecting steps that returned, by step key, over every attempt:
    #: a retry asking for the same one is served it instead of acting twice.
    done_side_effects: dict[str, StepRecorded] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "agent": self.agent,
            "needs": list(self.needs),
            "status": self.status.value,
            "attempt": self.attempt,
            "input": self.input,
            "idempotency_key": self.idempotency_key,
            "output": self.output,
            "confidence": self.confidence,
            "last_error": self.last_error,
            "resolved_by": self.resolved_by,
        }


@dataclass(slots=True)
class RunState:
    """A run rebuilt from its log up to :attr:`seq`."""

    run_id: str
    seq: int = 0
    status: RunStatus = RunStatus.CREATED
    workflow: str = ""
    workflow_ref: str = ""
    goal: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""
    #: When it was queued for the worker pool ("" for a run started in-process).
    submitted_at: str = ""
    key_base: str = ""
    max_event_bytes: int | None = None
    max_concurrency: int = 1
    max_retries: int | None = None
    max_cost: float | None = None
    deadline_s: float | None = None
    plan_problems: list[str] = field(default_factory=list)
    tasks: dict[str, TaskState] = field(default_factory=dict)
    retries_used: int = 0
    tokens: int = 0
    cost: float = 0.0
    budget_exhausted: str | None = None
    escalations: dict[str, Escalation] = field(default_factory=dict)
    #: Resolutions of a pool run's escalations that a worker has yet to apply.
    requested: dict[str, ResolutionRequested] = field(default_factory=dict)
    reason: str = ""
    forked_from: tuple[str, int] | None = None
    #: A fork made with ``repeat_side_effects=True``: it may perform again, with
    #: another input, a side effect its origin already performed.
    repeat_side_effects: bool = False
    #: The planner's journaled steps by index (its one call; served on resume).
    planner_steps: dict[int, StepRecorded | StepStarted] = field(default_factory=dict)
    # Derived counters, maintained by evolve.
    counts: dict[TaskStatus, int] = field(default_factory=lambda: dict.fromkeys(TaskStatus, 0))
    ready: dict[str, None] = field(default_factory=dict)

    @property
    def in_flight(self) -> int:
        """Tasks holding a concurrency slot (with an agent, being validated, or backing off)."""
        c = self.counts
        return c[TaskStatus.DISPATCHED] + c[TaskStatus.VALIDATING] + c[TaskStatus.RETRY_WAIT]

    @property
    def finished_tasks(self) -> int:
        c = self.counts
        return c[TaskStatus.SUCCEEDED] + c[TaskStatus.ABANDONED] + c[TaskStatus.SKIPPED]

    def task(self, task_id: str) -> TaskState:
        """The task named ``task_id``; ``KeyError`` if the plan has none."""
        return self.tasks[task_id]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready document of the whole state (``replay --json``)."""
        return {
            "run_id": self.run_id,
            "seq": self.seq,
            "status": self.status.value,
            "workflow": self.workflow,
            "goal": self.goal,
            "reason": self.reason,
            "tasks": {tid: t.to_dict() for tid, t in self.tasks.items()},
            "escalations": {
                tid: {"kind": e.kind, "reason": e.reason, "candidate": e.candidate}
                for tid, e in self.escalations.items()
            },
            "budget": {
                "retries_used": self.retries_used,
                "max_retries": self.max_retries,
                "tokens": self.tokens,
                "cost": self.cost,
                "max_cost": self.max_cost,
                "deadline_s": self.deadline_s,
                "exhausted": self.budget_exhausted,
            },
            "plan_problems": self.plan_problems,
            "forked_from": list(self.forked_from) if self.forked_from else None,
        }
