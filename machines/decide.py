"""The decider: given a run's state and one new fact, what happens next.

Facts are the events that record the outside world (:attr:`Event.FACT`): a
goal submitted (:class:`RunStarted`), the planner's answer
(:class:`PlanProposed`), an agent's output or error, a backoff timer, a
resolved escalation, a deadline, a cancel, a resume. For each, the decider
returns the fact (with the move it makes) followed by the orchestrator's
decisions, each with a ``reason`` a person can read at 2am.

Two entry points share one implementation:

- :func:`decide` is pure: it works on a copy and leaves ``state`` untouched.
- :func:`advance` applies the events to ``state`` as it decides (the runtime
  and ``verify`` use it: copying a 10,000-task state per fact would make a run
  quadratic).

No clock, no randomness, no I/O: the same state, fact and workflow always give
the same events, which is what makes ``ledgerflow verify --workflow`` possible.

Example::

    events = decide(state, OutputReceived(task_id="price", attempt=1, output={...}), wf)
    [type(e).__name__ for e in events]
    # ['OutputReceived', 'OutputAccepted', 'TaskSucceeded', 'TaskReady', 'TaskDispatched']
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import msgspec
from pydantic import ValidationError

from ledgerflow.contracts import (
    Plan,
    check_plan,
    validate_output,
)
from ledgerflow.machines import events as ev
from ledgerflow.machines.decisions import (
    Decision,
    check_cost,
    dispatch,
    fitted,
    over_the_limit,
    progress,
    retry_or_escalate,
    skip_dependents,
    succeed,
)
from ledgerflow.machines.errors import ResolutionError
from ledgerflow.machines.fsm import RunStatus, TaskStatus
from ledgerflow.machines.stable_names import EXECUTOR_LOST
from ledgerflow.machines.state import RunState, TaskState
from ledgerflow.machines.step_rules import PLANNER, open_side_effect_step
from ledgerflow.machines.workflow import Workflow

__all__ = ["advance", "decide"]


def decide(state: RunState, fact: ev.Event, workflow: Workflow, *,
           secrets: Mapping[str, Any] | None = None) -> list[ev.Event]:
    """The events that follow from ``fact``; ``state`` is left as it was."""
    return advance(copy.deepcopy(state), fact, workflow, secrets=secrets)


def advance(state: RunState, fact: ev.Event, workflow: Workflow, *,
            secrets: Mapping[str, Any] | None = None) -> list[ev.Event]:
    """Decide on ``fact`` and apply the resulting events to ``state``.

    Returns the events, the fact first. A fact that no longer applies (an
    output for an attempt the log already closed) returns ``[]``. ``secrets``
    (reference → value, from the store's vault) lets an output whose secret
    fields the log holds as references be validated on their real values.
    """
    d = Decision(state, workflow, secrets)
    handler = _FACT_HANDLERS.get(type(fact))
    if handler is None:
        raise TypeError(f"{type(fact).__name__} is not a fact the decider takes.")
    handler(d, fact)
    return d.out


# -- facts -------------------------------------------------------------------


def _run_started(d: Decision, fact: ev.RunStarted) -> None:
    budget = d.wf.budget
    d.emit_run(msgspec.structs.replace(
        fact,
        max_concurrency=d.wf.max_concurrency,
        max_retries=budget.max_retries,
        max_cost=budget.max_cost,
        deadline_s=budget.deadline_s,
        key_base=fact.key_base or d.state.run_id,
        reason=fact.reason or f"Goal submitted to workflow '{d.wf.name}'; asking the planner.",
    ))


def _run_submitted(d: Decision, fact: ev.RunSubmitted) -> None:
    d.emit_run(msgspec.structs.replace(
        fact, reason=fact.reason or f"Goal queued for a worker of workflow '{d.wf.name}'."))


def _plan_proposed(d: Decision, fact: ev.PlanProposed) -> None:
    if not fact.reason:
        count = len(fact.plan.get("tasks") or []) if isinstance(fact.plan, dict) else None
        fact = msgspec.structs.replace(fact, reason=(
            f"The planner failed: {fact.error}" if fact.error is not None
            else f"The planner proposed {count} task(s)." if count is not None
            else "The planner answered; checking its plan."))
    d.emit(fact)
    problems: list[ev.Problem]
    if fact.error is not None:
        problems = [ev.Problem(code="planner_failed", message=f"The planner failed: {fact.error}")]
        _reject_plan(d, problems)
        return
    try:
        plan = Plan.model_validate(fact.plan)
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'plan'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        _reject_plan(d, [ev.Problem(
            code="malformed_plan", message=f"The planner's answer is not a valid Plan: {detail}.",
        )])
        return
    found = check_plan(plan, d.wf.goal, d.wf.contracts)
    if found:
        _reject_plan(d, [ev.Problem(code=p.code, message=p.message, task_id=p.task_id)
                         for p in found])
        return
    d.emit_run(ev.PlanAccepted(
        tasks=[ev.PlannedTask(id=t.id, agent=t.agent, needs=list(t.needs), inputs=dict(t.inputs))
               for t in plan.tasks],
        reason=f"Plan of {len(plan.tasks)} task(s) passed the static checks "
        "(agents, dependencies, references, field types).",
    ))
    tasks = d.state.tasks
    for planned in plan.tasks:
        tasks[planned.id].plan_task = planned
    for task in d.state.tasks.values():
        if task.unmet == 0:
            d.emit_task(task, ev.TaskReady(task_id=task.id, reason="It needs no other task."))
    progress(d)


def _reject_plan(d: Decision, problems: list[ev.Problem]) -> None:
    summary = problems[0].message if len(problems) == 1 else (
        f"{len(problems)} problems, first: {problems[0].message}")
    d.emit_run(ev.PlanRejected(
        problems=problems, reason=f"Plan rejected before anything ran: {summary}"))


def _live_attempt(d: Decision, task_id: str, attempt: int) -> TaskState | None:
    task = d.state.tasks.get(task_id)
    if task is None or task.status is not TaskStatus.DISPATCHED or task.attempt != attempt:
        return None
    if d.state.status.terminal:
        return None
    return task


def _output_received(d: Decision, fact: ev.OutputReceived) -> None:
    task = _live_attempt(d, fact.task_id, fact.attempt)
    if task is None:
        return
    spec = d.spec(task)
    d.emit_task(task, msgspec.structs.replace(
        fact, reason=fact.reason or f"Agent '{spec.name}' returned attempt {fact.attempt}."))
    check_cost(d)
    verdict = validate_output(
        spec.output, fact.output, task_id=task.id, min_confidence=spec.min_confidence,
        secrets=d.secrets)
    if verdict.ok:
        assert verdict.value is not None
        d.emit(ev.OutputAccepted(
            task_id=task.id, attempt=fact.attempt, output=verdict.value,
            confidence=verdict.confidence, reason=verdict.reason,
        ))
        succeed(d, task, f"Its output passed {spec.output.__name__} validation.")
        progress(d)
        return
    d.emit(ev.OutputRejected(
        task_id=task.id, attempt=fact.attempt, errors=list(verdict.errors),
        confidence=verdict.confidence, low_confidence=verdict.low_confidence,
        reason=verdict.reason,
    ))
    if verdict.low_confidence and not spec.retry.retry_low_confidence:
        d.emit_task(task, ev.TaskEscalated(
            task_id=task.id, kind="low_confidence", candidate=verdict.value,
            reason=f"{verdict.reason} It is held back from downstream tasks for review.",
        ))
    else:
        kind = "low_confidence" if verdict.low_confidence else "invalid_output"
        candidate = verdict.value if verdict.low_confidence else fact.output
        retry_or_escalate(d, task, spec, kind=kind, why=verdict.reason, candidate=candidate)
    progress(d)


def lost_attempt_must_not_repeat(fact: ev.AgentFailed, *, safe_to_repeat: bool) -> bool:
    """Whether an attempt whose pool worker vanished must escalate rather than retry.

    Another worker found the claim lapsed: the agent may have acted, so only
    an agent safe to repeat runs again.
    """
    return fact.error_type == EXECUTOR_LOST and not safe_to_repeat


def _agent_failed(d: Decision, fact: ev.AgentFailed) -> None:
    task = _live_attempt(d, fact.task_id, fact.attempt)
    if task is None:
        return
    spec = d.spec(task)
    what = (f"timed out after {fact.message}" if fact.timed_out
            else f"raised {fact.error_type.rsplit('.', 1)[-1]}: {fact.message}")
    why = f"Agent '{spec.name}' {what} (attempt {fact.attempt})."
    d.emit(msgspec.structs.replace(fact, reason=fact.reason or why))
    check_cost(d)
    started = open_side_effect_step(task.steps)
    if started is not None:
        d.emit_task(task, ev.TaskEscalated(
            task_id=task.id, kind="outcome_unknown",
            reason=f"{why} Its side-effecting step {started.index} '{started.name}' had "
            "started and recorded no outcome, so the attempt is not run again; a person must "
            "check whether it acted.",
        ))
    elif lost_attempt_must_not_repeat(fact, safe_to_repeat=spec.safe_to_repeat):
        d.emit_task(task, ev.TaskEscalated(
            task_id=task.id, kind="outcome_unknown",
            reason=f"{why} Agent '{spec.name}' has side effects and is not idempotent, and "
            "the worker running it stopped before recording an outcome, so it is not run "
            "again; a person must check whether it acted.",
        ))
    elif not spec.retry.is_transient(fact.error_types or [fact.error_type],
                                     timed_out=fact.timed_out):
        d.emit_task(task, ev.TaskEscalated(
            task_id=task.id, kind="permanent_error",
            reason=f"{why} The retry policy treats it as permanent, so it is escalated.",
        ))
    else:
        retry_or_escalate(
            d, task, spec, kind="timeout" if fact.timed_out else "agent_error", why=why,
            candidate=None)
    progress(d)


def _timer_fired(d: Decision, fact: ev.TimerFired) -> None:
    task = d.state.tasks.get(fact.task_id)
    if task is None or task.status is not TaskStatus.RETRY_WAIT or d.state.status.terminal:
        return
    d.emit(msgspec.structs.replace(fact, reason=fact.reason or "Backoff elapsed."))
    if d.state.budget_exhausted and not task.budget_override:
        d.emit_task(task, ev.TaskEscalated(
            task_id=task.id, kind="budget",
            reason=f"The run's {d.state.budget_exhausted} budget is exhausted, so the retry "
            f"of task '{task.id}' is not dispatched.",
        ))
    else:
        dispatch(d, task, reason=f"Retrying after backoff (attempt {task.attempt + 1}).")
    progress(d)


def _resolution_requested(d: Decision, fact: ev.ResolutionRequested) -> None:
    task, output = _checked_resolution(d, fact)
    if fact.task_id in d.state.requested:
        raise ResolutionError(
            f"Task '{task.id}' of run '{d.state.run_id}' already has a resolution queued "
            f"(by {d.state.requested[fact.task_id].by}); a worker applies it when it picks the "
            "run up.")
    resolved = msgspec.structs.replace(fact, output=output, reason=fact.reason or (
        f"{fact.by} asked to {_VERBS[fact.action]} task '{task.id}'"
        + (f": {fact.note}" if fact.note else "") + "; queued for a worker to apply."))
    if d.state.status is RunStatus.WAITING:
        d.emit_run(resolved)
    else:
        d.emit(msgspec.structs.replace(resolved, src="", dst=""))


_VERBS = {"output": "supply an output for", "retry": "grant a retry of", "abandon": "abandon"}


def _checked_resolution(
    d: Decision, fact: ev.EscalationResolved | ev.ResolutionRequested
) -> tuple[TaskState, dict[str, Any] | None]:
    """The escalated task a resolution settles and its validated output; ResolutionError if
    it cannot apply."""
    task = d.state.tasks.get(fact.task_id)
    if task is None:
        raise ResolutionError(
            f"Run '{d.state.run_id}' has no task '{fact.task_id}' "
            f"(tasks: {', '.join(d.state.tasks) or 'none'})."
        )
    if task.status is not TaskStatus.ESCALATED:
        raise ResolutionError(
            f"Task '{task.id}' of run '{d.state.run_id}' is {task.status.value}, not escalated; "
            "only an escalated task can be resolved."
        )
    if d.state.status.terminal:
        raise ResolutionError(
            f"Run '{d.state.run_id}' is {d.state.status.value}; its escalations can no longer "
            "be resolved."
        )
    output = fact.output
    if fact.action == "output":
        spec = d.spec(task)
        verdict = validate_output(spec.output, fact.output, task_id=task.id, secrets=d.secrets)
        if not verdict.ok:
            raise ResolutionError(
                f"The output given for task '{task.id}' does not satisfy "
                f"{spec.output.__name__}: {'; '.join(verdict.errors)}."
            )
        output = verdict.value
    elif fact.action not in ("retry", "abandon"):
        raise ResolutionError(
            f"Unknown resolution '{fact.action}'; use output, retry or abandon.")
    return task, output


def _escalation_resolved(d: Decision, fact: ev.EscalationResolved) -> None:
    task, output = _checked_resolution(d, fact)
    verb = {"output": "supplied an output for", "retry": "granted a retry of",
            "abandon": "abandoned"}[fact.action]
    reason = fact.reason or (f"{fact.by} {verb} task '{task.id}'"
                             + (f": {fact.note}" if fact.note else "."))
    resolved = msgspec.structs.replace(fact, output=output, reason=reason)
    if d.state.status in (RunStatus.WAITING, RunStatus.QUEUED):
        d.emit_run(resolved)
    else:
        d.emit(msgspec.structs.replace(resolved, src="", dst=""))
    if fact.action == "output":
        succeed(d, task, f"Resolved by {fact.by}.")
    elif fact.action == "retry":
        d.emit_task(task, ev.TaskReady(task_id=task.id, reason=f"{fact.by} granted a retry."))
    else:
        d.emit_task(task, ev.TaskAbandoned(task_id=task.id, reason=f"Abandoned by {fact.by}."))
        skip_dependents(d, task)
    progress(d)


def _deadline_passed(d: Decision, fact: ev.DeadlinePassed) -> None:
    if d.state.status.terminal:
        return
    d.emit(msgspec.structs.replace(
        fact, reason=fact.reason or f"The run's deadline of {fact.deadline_s:g}s passed."))
    if not d.state.budget_exhausted:
        d.emit(ev.BudgetExhausted(
            kind="deadline", limit=fact.deadline_s, spent=fact.deadline_s,
            reason=f"The run's deadline of {fact.deadline_s:g}s passed; nothing more is "
            "dispatched without a person's say.",
        ))
    progress(d)


def _run_cancelled(d: Decision, fact: ev.RunCancelled) -> None:
    if d.state.status.terminal:
        return  # a cancel that raced the run's end: nothing left to cancel
    d.emit_run(msgspec.structs.replace(
        fact, reason=fact.reason or f"Cancelled by {fact.by or 'request'}."))


def _run_resumed(d: Decision, fact: ev.RunResumed) -> None:
    state = d.state
    lost = [t for t in state.tasks.values() if t.outstanding]
    ids = [t.id for t in lost]
    default = f"Resumed by {fact.by}; " + (
        f"{len(lost)} attempt(s) had no recorded outcome: {', '.join(ids)}."
        if lost else "no attempt was left without an outcome.")
    uncut = msgspec.structs.replace(fact, interrupted=ids, reason=default)
    limit = state.max_event_bytes
    if limit is not None and over_the_limit(uncut, limit):
        # Cut from what the decider wrote, never from the recorded (already cut)
        # reason a replay hands back: both then cut to the same bytes.
        d.emit(fitted(state, uncut))
    else:
        d.emit(msgspec.structs.replace(fact, interrupted=ids, reason=fact.reason or default))
    for task in lost:
        spec = d.spec(task)
        started = open_side_effect_step(task.steps)
        if started is not None:
            d.emit_task(task, ev.TaskEscalated(
                task_id=task.id, kind="outcome_unknown",
                reason=f"Outcome unknown after crash: attempt {task.attempt} of task "
                f"'{task.id}' had started its side-effecting step {started.index} "
                f"'{started.name}' and recorded no outcome, so it is not run again; a person "
                "must check whether it acted.",
            ))
        elif spec.safe_to_repeat:
            dispatch(d, task, reason=(
                f"Attempt {task.attempt} of task '{task.id}' has no recorded outcome; "
                f"re-dispatching it with the same idempotency key, as agent '{spec.name}' "
                + ("is idempotent." if spec.side_effect else "has no side effects.")),
                same_attempt=True)
        else:
            d.emit_task(task, ev.TaskEscalated(
                task_id=task.id, kind="outcome_unknown",
                reason=f"Outcome unknown after crash: attempt {task.attempt} of task "
                f"'{task.id}' was dispatched to agent '{spec.name}', which has side effects "
                "and is not idempotent, so it is not run again; a person must check whether "
                "it acted.",
            ))
    progress(d)


def _step_is_awaited(d: Decision, fact: ev.StepStarted | ev.StepRecorded) -> bool:
    """Whether the attempt (or the planner's call) this step belongs to is still awaited."""
    if fact.task_id == PLANNER:
        return d.state.status is RunStatus.PLANNING
    return _live_attempt(d, fact.task_id, fact.attempt) is not None


def _step_started(d: Decision, fact: ev.StepStarted) -> None:
    if not _step_is_awaited(d, fact):
        return
    d.emit(msgspec.structs.replace(fact, reason=fact.reason or (
        f"Step {fact.index} '{fact.name}' of attempt {fact.attempt} has side effects; "
        "recorded before it is called.")))


def _step_recorded(d: Decision, fact: ev.StepRecorded) -> None:
    if not _step_is_awaited(d, fact):
        return
    outcome = f"failed ({fact.error_type})" if fact.error_type else "returned"
    d.emit(msgspec.structs.replace(fact, reason=fact.reason or (
        f"Step {fact.index} '{fact.name}' of attempt {fact.attempt} {outcome}.")))
    check_cost(d)


_FACT_HANDLERS: dict[type[ev.Event], Any] = {
    ev.RunStarted: _run_started,
    ev.RunSubmitted: _run_submitted,
    ev.PlanProposed: _plan_proposed,
    ev.OutputReceived: _output_received,
    ev.AgentFailed: _agent_failed,
    ev.TimerFired: _timer_fired,
    ev.EscalationResolved: _escalation_resolved,
    ev.ResolutionRequested: _resolution_requested,
    ev.DeadlinePassed: _deadline_passed,
    ev.RunCancelled: _run_cancelled,
    ev.RunResumed: _run_resumed,
    ev.StepStarted: _step_started,
    ev.StepRecorded: _step_recorded,
}
