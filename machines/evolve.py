"""The fold: apply one event to a run's state.

``evolve(state, event)`` fires the event's trigger on the run or task machine,
through the lookup compiled from the ``transitions`` definition
(:mod:`ledgerflow.machines.fsm`), and records the event's data. A move the table does not
allow, or an event whose recorded source state is not the state the fold is
in, raises :class:`IllegalTransitionError`: a corrupt or hand-edited log is
caught on replay, never silently accepted.

The fold owns the state it is given and updates it in place (copying a
10,000-task state per event would make replay quadratic); it is pure in every
other sense: no clock, no I/O, the same events give the same state.

Example::

    >>> from machines.events import RunStarted
    >>> s = evolve(RunState(run_id="r1"), RunStarted(
    ...     workflow="travel", goal={}, started_at="2026-01-01T00:00:00+00:00",
    ...     max_concurrency=4, src="created", dst="planning"))
    >>> s.status, s.seq
    (<RunStatus.PLANNING: 'planning'>, 1)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ledgerflow.machines import events as ev
from ledgerflow.machines.errors import IllegalTransitionError
from ledgerflow.machines.fsm import RUN_TABLE, TASK_TABLE, RunStatus, TaskStatus, allowed_sources
from ledgerflow.machines.state import Escalation, RunState, TaskState
from ledgerflow.machines.step_rules import PLANNER, step_key

__all__ = ["evolve", "fold"]


def fold(state: RunState, events: Iterable[ev.Event]) -> RunState:
    """Apply events in order; the state after the last one."""
    for event in events:
        evolve(state, event)
    return state


def evolve(state: RunState, event: ev.Event) -> RunState:
    """Apply one event to ``state`` (in place) and return it."""
    seq = state.seq + 1
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise IllegalTransitionError(
            machine="run", trigger=type(event).__name__, state=state.status.value,
            allowed=(), seq=seq, detail="The event type is unknown to this version.",
        )
    handler(state, event, seq)
    state.seq = seq
    return state


# -- moves -------------------------------------------------------------------


def _move_run(state: RunState, event: ev.Event, seq: int) -> None:
    trigger = event.TRIGGER or ""
    current = state.status
    dest = RUN_TABLE.get((current, trigger))
    if dest is None or event.src != current or event.dst != dest:
        raise IllegalTransitionError(
            machine="run", trigger=trigger, state=current.value,
            allowed=[s.value for s in allowed_sources(RUN_TABLE, trigger)], seq=seq,
            detail=_recorded(event),
        )
    state.status = dest


def _task(state: RunState, event: ev.TaskEvent, seq: int) -> TaskState:
    task = state.tasks.get(event.task_id)
    if task is None:
        raise IllegalTransitionError(
            machine=f"task:{event.task_id}", trigger=event.TRIGGER or type(event).__name__,
            state="absent", allowed=(), seq=seq,
            detail="The run's accepted plan has no such task.",
        )
    return task


def _move_task(state: RunState, event: ev.TaskEvent, seq: int) -> TaskState:
    task = _task(state, event, seq)
    trigger = event.TRIGGER or ""
    current = task.status
    dest = TASK_TABLE.get((current, trigger))
    if dest is None or event.src != current or event.dst != dest:
        raise IllegalTransitionError(
            machine=f"task '{task.id}'", trigger=trigger, state=current.value,
            allowed=[s.value for s in allowed_sources(TASK_TABLE, trigger)], seq=seq,
            detail=_recorded(event),
        )
    counts = state.counts
    counts[current] -= 1
    counts[dest] += 1
    task.status = dest
    if current is TaskStatus.READY:
        state.ready.pop(task.id, None)
    return task


def _expect_task(state: RunState, event: ev.TaskEvent, seq: int, *allowed: TaskStatus) -> TaskState:
    task = _task(state, event, seq)
    if task.status not in allowed:
        raise IllegalTransitionError(
            machine=f"task '{task.id}'", trigger=type(event).__name__, state=task.status.value,
            allowed=[s.value for s in allowed], seq=seq,
        )
    return task


def _recorded(event: ev.Event) -> str:
    if event.src or event.dst:
        return f"The log records {event.src or '?'} -> {event.dst or '?'}."
    return "The log records no move."


# -- handlers ----------------------------------------------------------------


def _record_goal(state: RunState, e: ev.WorkflowGoalEvent, seq: int) -> None:
    _move_run(state, e, seq)
    state.workflow = e.workflow
    state.workflow_ref = e.workflow_ref
    state.goal = e.goal


def _run_started(state: RunState, e: ev.RunStarted, seq: int) -> None:
    _record_goal(state, e, seq)
    state.started_at = e.started_at
    state.key_base = e.key_base or state.run_id
    state.max_event_bytes = e.max_event_bytes
    state.max_concurrency = e.max_concurrency
    state.max_retries = e.max_retries
    state.max_cost = e.max_cost
    state.deadline_s = e.deadline_s


def _run_submitted(state: RunState, e: ev.RunSubmitted, seq: int) -> None:
    _record_goal(state, e, seq)
    state.submitted_at = e.submitted_at


def _plan_proposed(state: RunState, e: ev.PlanProposed, seq: int) -> None:
    if state.status is not RunStatus.PLANNING:
        raise IllegalTransitionError(
            machine="run", trigger="PlanProposed", state=state.status.value,
            allowed=["planning"], seq=seq,
        )


def _plan_accepted(state: RunState, e: ev.PlanAccepted, seq: int) -> None:
    _move_run(state, e, seq)
    tasks: dict[str, TaskState] = {}
    for planned in e.tasks:
        tasks[planned.id] = TaskState(
            id=planned.id, agent=planned.agent, needs=tuple(planned.needs),
            inputs=planned.inputs, unmet=len(planned.needs),
        )
    for task in tasks.values():
        for need in task.needs:
            tasks[need].dependents.append(task.id)
    state.tasks = tasks
    state.counts[TaskStatus.PENDING] += len(tasks)


def _plan_rejected(state: RunState, e: ev.PlanRejected, seq: int) -> None:
    _move_run(state, e, seq)
    state.plan_problems = [p.message for p in e.problems]
    state.reason = e.reason


def _task_ready(state: RunState, e: ev.TaskReady, seq: int) -> None:
    _move_task(state, e, seq)
    state.ready[e.task_id] = None


def _task_dispatched(state: RunState, e: ev.TaskDispatched, seq: int) -> None:
    task = _move_task(state, e, seq)
    if e.attempt != task.attempt:
        task.steps = {}  # a new attempt starts fresh; a resumed one keeps its steps
    task.attempt = e.attempt
    task.input = e.input
    task.idempotency_key = e.idempotency_key
    task.outstanding = True
    task.budget_override = False


def _output_received(state: RunState, e: ev.OutputReceived, seq: int) -> None:
    task = _move_task(state, e, seq)
    task.outstanding = False
    state.tokens += e.tokens
    state.cost += e.cost


def _agent_failed(state: RunState, e: ev.AgentFailed, seq: int) -> None:
    task = _expect_task(state, e, seq, TaskStatus.DISPATCHED)
    task.outstanding = False
    task.last_error = e.reason or f"{e.error_type}: {e.message}"
    state.tokens += e.tokens
    state.cost += e.cost


def _output_accepted(state: RunState, e: ev.OutputAccepted, seq: int) -> None:
    task = _expect_task(state, e, seq, TaskStatus.VALIDATING)
    task.output = e.output
    task.confidence = e.confidence


def _output_rejected(state: RunState, e: ev.OutputRejected, seq: int) -> None:
    task = _expect_task(state, e, seq, TaskStatus.VALIDATING)
    task.last_error = e.reason
    task.confidence = e.confidence


def _retry_scheduled(state: RunState, e: ev.RetryScheduled, seq: int) -> None:
    _move_task(state, e, seq)
    state.retries_used += 1


def _timer_fired(state: RunState, e: ev.TimerFired, seq: int) -> None:
    _expect_task(state, e, seq, TaskStatus.RETRY_WAIT)


def _task_escalated(state: RunState, e: ev.TaskEscalated, seq: int) -> None:
    task = _move_task(state, e, seq)
    task.outstanding = False
    state.escalations[task.id] = Escalation(
        task_id=task.id, kind=e.kind, reason=e.reason, candidate=e.candidate
    )


def _resolution_requested(state: RunState, e: ev.ResolutionRequested, seq: int) -> None:
    task = _expect_task(state, e, seq, TaskStatus.ESCALATED)
    if e.dst:
        _move_run(state, e, seq)
    elif state.status not in (RunStatus.RUNNING, RunStatus.QUEUED):
        raise IllegalTransitionError(
            machine="run", trigger="ResolutionRequested", state=state.status.value,
            allowed=["running", "queued"], seq=seq,
        )
    state.requested[task.id] = e


def _escalation_resolved(state: RunState, e: ev.EscalationResolved, seq: int) -> None:
    task = _expect_task(state, e, seq, TaskStatus.ESCALATED)
    if e.dst:
        _move_run(state, e, seq)
        state.reason = e.reason
    elif state.status not in (RunStatus.RUNNING, RunStatus.WAITING):
        raise IllegalTransitionError(
            machine="run", trigger="EscalationResolved", state=state.status.value,
            allowed=["running", "waiting"], seq=seq,
        )
    state.escalations.pop(task.id, None)
    state.requested.pop(task.id, None)
    task.resolved_by = e.by
    if e.action == "output":
        task.output = e.output
    elif e.action == "retry":
        task.granted_attempts += 1
        task.budget_override = True


def _task_succeeded(state: RunState, e: ev.TaskSucceeded, seq: int) -> None:
    task = _move_task(state, e, seq)
    tasks = state.tasks
    for dependent in task.dependents:
        tasks[dependent].unmet -= 1


def _task_abandoned(state: RunState, e: ev.TaskAbandoned, seq: int) -> None:
    _move_task(state, e, seq)


def _task_skipped(state: RunState, e: ev.TaskSkipped, seq: int) -> None:
    _move_task(state, e, seq)


def _step_slot(
    state: RunState, e: ev.StepStarted | ev.StepRecorded, seq: int
) -> tuple[dict[int, ev.StepRecorded | ev.StepStarted], TaskState | None]:
    """The steps this one joins (the current attempt's, or the planner's) and its task."""
    task: TaskState | None = None
    if e.task_id == PLANNER:
        if state.status is not RunStatus.PLANNING or e.attempt != 1:
            raise IllegalTransitionError(
                machine="run", trigger=type(e).__name__, state=state.status.value,
                allowed=["planning"], seq=seq, detail="A planner step outside planning.")
        steps = state.planner_steps
    else:
        task = _expect_task(state, e, seq, TaskStatus.DISPATCHED)
        if e.attempt != task.attempt:
            raise IllegalTransitionError(
                machine=f"task '{task.id}'", trigger=type(e).__name__,
                state=task.status.value, allowed=[], seq=seq,
                detail=f"The log records step {e.index} of attempt {e.attempt}; the task is "
                f"at attempt {task.attempt}.",
            )
        steps = task.steps
    if e.index < 0:
        raise IllegalTransitionError(
            machine=f"task '{e.task_id}'", trigger=type(e).__name__, state="", allowed=[],
            seq=seq, detail=f"The log records step index {e.index}.")
    if e.discards_later:
        for index in [i for i in steps if i >= e.index]:
            del steps[index]
    return steps, task


def _step_started(state: RunState, e: ev.StepStarted, seq: int) -> None:
    steps, _ = _step_slot(state, e, seq)
    steps[e.index] = e


def _step_recorded(state: RunState, e: ev.StepRecorded, seq: int) -> None:
    steps, task = _step_slot(state, e, seq)
    steps[e.index] = e
    if task is not None and e.side_effect and not e.error_type:
        task.done_side_effects[step_key(e.name, e.request_hash)] = e
    state.tokens += e.tokens
    state.cost += e.cost


def _budget_exhausted(state: RunState, e: ev.BudgetExhausted, seq: int) -> None:
    state.budget_exhausted = e.kind


def _no_change(state: RunState, e: ev.Event, seq: int) -> None:
    return


def _run_move(state: RunState, e: ev.Event, seq: int) -> None:
    _move_run(state, e, seq)
    state.reason = e.reason


def _forked_from(state: RunState, e: ev.ForkedFrom, seq: int) -> None:
    state.forked_from = (e.origin_run_id, e.at_seq)
    # getattr: the field is recorded only by versions that know it.
    state.repeat_side_effects = bool(getattr(e, "repeat_side_effects", False))
    if e.started_at:
        state.started_at = e.started_at


_HANDLERS: dict[type[Any], Callable[[RunState, Any, int], None]] = {
    ev.RunStarted: _run_started,
    ev.RunSubmitted: _run_submitted,
    ev.PlanProposed: _plan_proposed,
    ev.PlanAccepted: _plan_accepted,
    ev.PlanRejected: _plan_rejected,
    ev.TaskReady: _task_ready,
    ev.TaskDispatched: _task_dispatched,
    ev.OutputReceived: _output_received,
    ev.AgentFailed: _agent_failed,
    ev.OutputAccepted: _output_accepted,
    ev.OutputRejected: _output_rejected,
    ev.RetryScheduled: _retry_scheduled,
    ev.TimerFired: _timer_fired,
    ev.TaskEscalated: _task_escalated,
    ev.EscalationResolved: _escalation_resolved,
    ev.ResolutionRequested: _resolution_requested,
    ev.TaskSucceeded: _task_succeeded,
    ev.TaskAbandoned: _task_abandoned,
    ev.TaskSkipped: _task_skipped,
    ev.BudgetExhausted: _budget_exhausted,
    ev.DeadlinePassed: _no_change,
    ev.RunWaiting: _run_move,
    ev.RunCompleted: _run_move,
    ev.RunFailed: _run_move,
    ev.RunCancelled: _run_move,
    ev.RunResumed: _no_change,
    ev.ForkedFrom: _forked_from,
    ev.StepStarted: _step_started,
    ev.StepRecorded: _step_recorded,
}
