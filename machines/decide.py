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
from itertools import islice
from typing import Any, TypeVar

import msgspec
from pydantic import ValidationError

from ledgerflow.contracts import (
    ContractError,
    Plan,
    Task,
    check_plan,
    resolve_inputs,
    validate_output,
)
from ledgerflow.machines import events as ev
from ledgerflow.machines.errors import IllegalTransitionError, ResolutionError
from ledgerflow.machines.evolve import evolve
from ledgerflow.machines.fsm import RUN_TABLE, TASK_TABLE, RunStatus, TaskStatus
from ledgerflow.machines.state import RunState, TaskState
from ledgerflow.machines.workflow import AgentSpec, Workflow, idempotency_key

__all__ = ["advance", "decide"]

#: Room left in a TaskDispatched for everything around its input.
_INPUT_ROOM = 4096
encode_json = msgspec.json.encode


def decide(state: RunState, fact: ev.Event, workflow: Workflow) -> list[ev.Event]:
    """The events that follow from ``fact``; ``state`` is left as it was."""
    return advance(copy.deepcopy(state), fact, workflow)


def advance(state: RunState, fact: ev.Event, workflow: Workflow) -> list[ev.Event]:
    """Decide on ``fact`` and apply the resulting events to ``state``.

    Returns the events, the fact first. A fact that no longer applies (an
    output for an attempt the log already closed) returns ``[]``.
    """
    d = _Decision(state, workflow)
    handler = _FACT_HANDLERS.get(type(fact))
    if handler is None:
        raise TypeError(f"{type(fact).__name__} is not a fact the decider takes.")
    handler(d, fact)
    return d.out


class _Decision:
    """Accumulates the events of one decision, applying each as it goes."""

    __slots__ = ("out", "state", "wf")

    def __init__(self, state: RunState, wf: Workflow) -> None:
        self.state = state
        self.wf = wf
        self.out: list[ev.Event] = []

    def emit(self, event: ev.Event) -> None:
        evolve(self.state, event)
        self.out.append(event)

    def run_move(self, event: ev.Event) -> ev.Event:
        """Fill in the run's move for ``event`` (its class names the trigger)."""
        src = self.state.status
        dst = RUN_TABLE.get((src, event.TRIGGER or ""))
        if dst is None:
            raise IllegalTransitionError(
                machine="run", trigger=event.TRIGGER or "", state=src.value,
                allowed=[s.value for (s, t) in RUN_TABLE if t == event.TRIGGER],
            )
        return msgspec.structs.replace(event, src=src, dst=dst)

    def task_move(self, task: TaskState, event: ev.TaskEvent) -> ev.TaskEvent:
        src = task.status
        dst = TASK_TABLE.get((src, event.TRIGGER or ""))
        if dst is None:
            raise IllegalTransitionError(
                machine=f"task '{task.id}'", trigger=event.TRIGGER or "", state=src.value,
                allowed=[s.value for (s, t) in TASK_TABLE if t == event.TRIGGER],
            )
        return msgspec.structs.replace(event, src=src, dst=dst)

    def emit_run(self, event: ev.Event) -> None:
        self.emit(self.run_move(event))

    def emit_task(self, task: TaskState, event: ev.TaskEvent) -> None:
        self.emit(self.task_move(task, event))

    def spec(self, task: TaskState) -> AgentSpec:
        return self.wf.spec(task.agent)


# -- facts -------------------------------------------------------------------


def _run_started(d: _Decision, fact: ev.RunStarted) -> None:
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


def _plan_proposed(d: _Decision, fact: ev.PlanProposed) -> None:
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
    _progress(d)


def _reject_plan(d: _Decision, problems: list[ev.Problem]) -> None:
    summary = problems[0].message if len(problems) == 1 else (
        f"{len(problems)} problems, first: {problems[0].message}")
    d.emit_run(_fitted(d.state, ev.PlanRejected(
        problems=problems, reason=f"Plan rejected before anything ran: {summary}")))


def _live_attempt(d: _Decision, task_id: str, attempt: int) -> TaskState | None:
    task = d.state.tasks.get(task_id)
    if task is None or task.status is not TaskStatus.DISPATCHED or task.attempt != attempt:
        return None
    if d.state.status.terminal:
        return None
    return task


def _output_received(d: _Decision, fact: ev.OutputReceived) -> None:
    task = _live_attempt(d, fact.task_id, fact.attempt)
    if task is None:
        return
    spec = d.spec(task)
    d.emit_task(task, msgspec.structs.replace(
        fact, reason=fact.reason or f"Agent '{spec.name}' returned attempt {fact.attempt}."))
    _check_cost(d)
    verdict = validate_output(
        spec.output, fact.output, task_id=task.id, min_confidence=spec.min_confidence)
    if verdict.ok:
        assert verdict.value is not None
        d.emit(ev.OutputAccepted(
            task_id=task.id, attempt=fact.attempt, output=verdict.value,
            confidence=verdict.confidence, reason=verdict.reason,
        ))
        _succeed(d, task, f"Its output passed {spec.output.__name__} validation.")
        _progress(d)
        return
    d.emit(_fitted(d.state, ev.OutputRejected(
        task_id=task.id, attempt=fact.attempt, errors=list(verdict.errors),
        confidence=verdict.confidence, low_confidence=verdict.low_confidence,
        reason=verdict.reason,
    )))
    if verdict.low_confidence and not spec.retry.retry_low_confidence:
        d.emit_task(task, ev.TaskEscalated(
            task_id=task.id, kind="low_confidence", candidate=verdict.value,
            reason=f"{verdict.reason} It is held back from downstream tasks for review.",
        ))
    else:
        kind = "low_confidence" if verdict.low_confidence else "invalid_output"
        candidate = verdict.value if verdict.low_confidence else fact.output
        _retry_or_escalate(d, task, spec, kind=kind, why=verdict.reason, candidate=candidate)
    _progress(d)


def _agent_failed(d: _Decision, fact: ev.AgentFailed) -> None:
    task = _live_attempt(d, fact.task_id, fact.attempt)
    if task is None:
        return
    spec = d.spec(task)
    what = (f"timed out after {fact.message}" if fact.timed_out
            else f"raised {fact.error_type.rsplit('.', 1)[-1]}: {fact.message}")
    why = f"Agent '{spec.name}' {what} (attempt {fact.attempt})."
    d.emit(msgspec.structs.replace(fact, reason=fact.reason or why))
    _check_cost(d)
    if not spec.retry.is_transient(fact.error_types or [fact.error_type], timed_out=fact.timed_out):
        d.emit_task(task, ev.TaskEscalated(
            task_id=task.id, kind="permanent_error",
            reason=f"{why} The retry policy treats it as permanent, so it is escalated.",
        ))
    else:
        _retry_or_escalate(
            d, task, spec, kind="timeout" if fact.timed_out else "agent_error", why=why,
            candidate=None)
    _progress(d)


def _timer_fired(d: _Decision, fact: ev.TimerFired) -> None:
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
        _dispatch(d, task, reason=f"Retrying after backoff (attempt {task.attempt + 1}).")
    _progress(d)


def _escalation_resolved(d: _Decision, fact: ev.EscalationResolved) -> None:
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
        verdict = validate_output(spec.output, fact.output, task_id=task.id)
        if not verdict.ok:
            raise ResolutionError(
                f"The output given for task '{task.id}' does not satisfy "
                f"{spec.output.__name__}: {'; '.join(verdict.errors)}."
            )
        output = verdict.value
    elif fact.action not in ("retry", "abandon"):
        raise ResolutionError(
            f"Unknown resolution '{fact.action}'; use output, retry or abandon.")
    verb = {"output": "supplied an output for", "retry": "granted a retry of",
            "abandon": "abandoned"}[fact.action]
    reason = fact.reason or (f"{fact.by} {verb} task '{task.id}'"
                             + (f": {fact.note}" if fact.note else "."))
    resolved = msgspec.structs.replace(fact, output=output, reason=reason)
    if d.state.status is RunStatus.WAITING:
        d.emit_run(resolved)
    else:
        d.emit(msgspec.structs.replace(resolved, src="", dst=""))
    if fact.action == "output":
        _succeed(d, task, f"Resolved by {fact.by}.")
    elif fact.action == "retry":
        d.emit_task(task, ev.TaskReady(task_id=task.id, reason=f"{fact.by} granted a retry."))
    else:
        d.emit_task(task, ev.TaskAbandoned(task_id=task.id, reason=f"Abandoned by {fact.by}."))
        _skip_dependents(d, task)
    _progress(d)


def _deadline_passed(d: _Decision, fact: ev.DeadlinePassed) -> None:
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
    _progress(d)


def _run_cancelled(d: _Decision, fact: ev.RunCancelled) -> None:
    if d.state.status.terminal:
        return  # a cancel that raced the run's end: nothing left to cancel
    d.emit_run(msgspec.structs.replace(
        fact, reason=fact.reason or f"Cancelled by {fact.by or 'request'}."))


def _run_resumed(d: _Decision, fact: ev.RunResumed) -> None:
    state = d.state
    lost = [t for t in state.tasks.values() if t.outstanding]
    d.emit(msgspec.structs.replace(
        fact, interrupted=[t.id for t in lost],
        reason=fact.reason or (
            f"Resumed by {fact.by}; " + (
                f"{len(lost)} attempt(s) had no recorded outcome: {', '.join(t.id for t in lost)}."
                if lost else "no attempt was left without an outcome.")),
    ))
    for task in lost:
        spec = d.spec(task)
        if spec.safe_to_repeat:
            _dispatch(d, task, reason=(
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
    _progress(d)


# -- decisions ---------------------------------------------------------------


#: Lists this short are never measured: they cannot approach an event's limit.
_FEW = 32
_Listing = TypeVar("_Listing", ev.OutputRejected, ev.PlanRejected)


def _fitted(state: RunState, event: _Listing) -> _Listing:
    """``event`` with its errors or problems cut so that the log can hold it.

    Cut only when the whole list would be over the run's recorded event limit
    (such an event could never be appended, so no log holds one uncut, and
    replay cuts at the same point): it keeps what fits in half the limit and
    says how many more there were.
    """
    limit = state.max_event_bytes
    items: list[Any] = (event.errors if isinstance(event, ev.OutputRejected)
                        else event.problems)
    if limit is None or len(items) <= _FEW or len(encode_json(event)) <= limit:
        return event
    keep: int = len(items)
    while keep > 1:
        keep //= 2
        if len(encode_json(items[:keep])) <= limit // 2:
            break
    more: int = len(items) - keep
    if isinstance(event, ev.OutputRejected):
        return msgspec.structs.replace(
            event, errors=[*event.errors[:keep], f"... and {more:,} more error(s)"])
    return msgspec.structs.replace(event, problems=[*event.problems[:keep], ev.Problem(
        code="more_problems", message=f"... and {more:,} more problem(s)")])



def _retry_or_escalate(
    d: _Decision, task: TaskState, spec: AgentSpec, *, kind: str, why: str, candidate: Any
) -> None:
    state = d.state
    allowed = spec.retry.max_attempts + task.granted_attempts
    if not spec.safe_to_repeat:
        d.emit_task(task, ev.TaskEscalated(
            task_id=task.id, kind=kind, candidate=candidate,
            reason=f"{why} Agent '{spec.name}' has side effects and is not idempotent, so "
            "it is not run again automatically: it may already have acted.",
        ))
    elif task.attempt >= allowed:
        d.emit_task(task, ev.TaskEscalated(
            task_id=task.id, kind=kind, candidate=candidate,
            reason=f"{why} That was attempt {task.attempt} of {allowed}; escalating instead "
            "of retrying.",
        ))
    elif state.budget_exhausted:
        d.emit_task(task, ev.TaskEscalated(
            task_id=task.id, kind=kind, candidate=candidate,
            reason=f"{why} The run's {state.budget_exhausted} budget is exhausted; escalating.",
        ))
    elif state.max_retries is not None and state.retries_used >= state.max_retries:
        d.emit(ev.BudgetExhausted(
            kind="max_retries", limit=state.max_retries, spent=state.retries_used,
            reason=f"The run has used all {state.max_retries} retries of its budget; no more "
            "retries or dispatches without a person's say.",
        ))
        d.emit_task(task, ev.TaskEscalated(
            task_id=task.id, kind=kind, candidate=candidate,
            reason=f"{why} The run's retry budget ({state.max_retries}) is exhausted; escalating.",
        ))
    else:
        delay = spec.retry.delay(state.key_base, task.id, attempt=task.attempt)
        d.emit_task(task, ev.RetryScheduled(
            task_id=task.id, attempt=task.attempt, next_attempt=task.attempt + 1,
            delay_s=delay,
            reason=f"Retrying in {delay:.3g}s (attempt {task.attempt + 1} of {allowed}; "
            f"run retries used {state.retries_used + 1}"
            + (f" of {state.max_retries})." if state.max_retries is not None else ")."),
        ))


def _check_cost(d: _Decision) -> None:
    state = d.state
    if state.max_cost is not None and not state.budget_exhausted and state.cost > state.max_cost:
        d.emit(ev.BudgetExhausted(
            kind="max_cost", limit=state.max_cost, spent=state.cost,
            reason=f"Agents have reported a cost of {state.cost:.4g}, over the run's budget of "
            f"{state.max_cost:.4g}; nothing more is dispatched without a person's say.",
        ))


def _succeed(d: _Decision, task: TaskState, reason: str) -> None:
    d.emit_task(task, ev.TaskSucceeded(task_id=task.id, reason=reason))
    tasks = d.state.tasks
    for dep_id in task.dependents:
        dependent = tasks[dep_id]
        if dependent.unmet == 0 and dependent.status is TaskStatus.PENDING:
            d.emit_task(dependent, ev.TaskReady(
                task_id=dep_id,
                reason=f"All it needs has succeeded ({', '.join(dependent.needs)}).",
            ))


def _skip_dependents(d: _Decision, root: TaskState) -> None:
    tasks = d.state.tasks
    stack = [(root.id, dep) for dep in reversed(root.dependents)]
    while stack:
        because, dep_id = stack.pop()
        dependent = tasks[dep_id]
        if dependent.status is not TaskStatus.PENDING:
            continue
        d.emit_task(dependent, ev.TaskSkipped(
            task_id=dep_id, because=because,
            reason=f"It needs '{because}', which will not succeed.",
        ))
        stack.extend((dep_id, nxt) for nxt in reversed(dependent.dependents))


def _dispatch(d: _Decision, task: TaskState, *, reason: str, same_attempt: bool = False) -> None:
    state = d.state
    spec = d.spec(task)
    if task.input is not None and (same_attempt or task.status is TaskStatus.RETRY_WAIT):
        inp = task.input
    else:
        try:
            if task.plan_task is None:  # a state rebuilt from the log
                task.plan_task = Task.model_construct(
                    id=task.id, agent=task.agent, needs=list(task.needs), inputs=task.inputs)
            inp = resolve_inputs(
                task.plan_task,
                state.goal,
                {need: state.tasks[need].output or {} for need in task.needs},
            )
        except ContractError as exc:
            d.emit_task(task, ev.TaskEscalated(
                task_id=task.id, kind="input_unresolvable",
                reason=f"The input of task '{task.id}' could not be built: {exc}",
            ))
            return
    limit = state.max_event_bytes
    if limit is not None:
        size = len(encode_json(inp))
        if size > limit - _INPUT_ROOM:
            d.emit_task(task, ev.TaskEscalated(
                task_id=task.id, kind="input_too_large",
                reason=f"The input of task '{task.id}' would be {size:,} bytes, over the "
                f"{limit - _INPUT_ROOM:,} bytes one logged event can hold; narrow what it maps "
                "from upstream outputs.",
            ))
            return
    attempt = task.attempt if same_attempt else task.attempt + 1
    d.emit_task(task, ev.TaskDispatched(
        task_id=task.id, attempt=attempt, input=inp,
        idempotency_key=task.idempotency_key or idempotency_key(state.key_base, task.id),
        timeout_s=spec.timeout_s, reason=reason,
    ))


def _progress(d: _Decision) -> None:
    """Dispatch what may run now, then see whether the run is done or must wait."""
    state = d.state
    if state.status is not RunStatus.RUNNING:
        return
    if state.ready:
        if state.budget_exhausted:
            for task_id in list(state.ready):
                task = state.tasks[task_id]
                if task.budget_override:
                    continue
                d.emit_task(task, ev.TaskEscalated(
                    task_id=task_id, kind="budget",
                    reason=f"The run's {state.budget_exhausted} budget is exhausted, so task "
                    f"'{task_id}' is not dispatched.",
                ))
        slots = state.max_concurrency - state.in_flight
        if slots > 0:
            for task_id in list(islice(state.ready, slots)):
                task = state.tasks[task_id]
                first = task.attempt == 0
                _dispatch(d, task, reason=(
                    "Ready and within the concurrency limit." if first
                    else f"Retry granted by {task.resolved_by}."))
    total = len(state.tasks)
    if state.finished_tasks == total:
        failed = [t for t in state.tasks.values() if t.status is not TaskStatus.SUCCEEDED]
        if not failed:
            d.emit_run(ev.RunCompleted(reason=f"All {total} task(s) succeeded."))
        else:
            listing = ", ".join(f"{t.id} ({t.status.value})" for t in failed[:10])
            d.emit_run(ev.RunFailed(
                reason=f"{len(failed)} of {total} task(s) did not succeed: {listing}."))
    elif state.in_flight == 0 and not state.ready and state.escalations:
        names = list(state.escalations)
        d.emit_run(ev.RunWaiting(
            escalations=names,
            reason=f"Nothing can proceed until escalation(s) are resolved: {', '.join(names)}.",
        ))


_FACT_HANDLERS: dict[type[ev.Event], Any] = {
    ev.RunStarted: _run_started,
    ev.PlanProposed: _plan_proposed,
    ev.OutputReceived: _output_received,
    ev.AgentFailed: _agent_failed,
    ev.TimerFired: _timer_fired,
    ev.EscalationResolved: _escalation_resolved,
    ev.DeadlinePassed: _deadline_passed,
    ev.RunCancelled: _run_cancelled,
    ev.RunResumed: _run_resumed,
}
