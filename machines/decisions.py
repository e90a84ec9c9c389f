"""The decider's own moves: dispatch, retry or escalate, succeed, skip, finish.

:mod:`ledgerflow.machines.decide` takes each fact to one of these; they share
a :class:`Decision`, which applies every event to the state as it is emitted
(so the next move sees it) and collects them in order. Pure, like the decider.

Example::

    d = Decision(state, workflow)
    progress(d)          # dispatch what may run, complete or wait the run
    d.out                # the events, in order
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import islice
from typing import Any

import msgspec

from ledgerflow.contracts import ContractError, Task, resolve_inputs
from ledgerflow.machines import events as ev
from ledgerflow.machines.errors import IllegalTransitionError
from ledgerflow.machines.evolve import evolve
from ledgerflow.machines.fsm import RUN_TABLE, TASK_TABLE, RunStatus, TaskStatus
from ledgerflow.machines.state import RunState, TaskState
from ledgerflow.machines.workflow import AgentSpec, Workflow, idempotency_key

__all__ = ["GROWING", "Decision", "check_cost", "dispatch", "fitted", "over_the_limit",
           "progress", "retry_or_escalate", "skip_dependents", "succeed"]

#: Room left in a TaskDispatched for everything around its input.
_INPUT_ROOM = 4096
encode_json = msgspec.json.encode


class Decision:
    """Accumulates the events of one decision, applying each as it goes."""

    __slots__ = ("out", "secrets", "state", "wf")

    def __init__(self, state: RunState, wf: Workflow,
                 secrets: Mapping[str, Any] | None = None) -> None:
        self.state = state
        self.wf = wf
        #: The vault's values by reference, for validating outputs that hold references.
        self.secrets = secrets
        self.out: list[ev.Event] = []

    def emit(self, event: ev.Event) -> None:
        if type(event) in GROWING:
            event = fitted(self.state, event)
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


#: What an event over the limit keeps of each listed error or problem, and of a reason.
_ITEM_CHARS = 1000
_REASON_CHARS = 2000
#: Names a cut RunWaiting or RunResumed reason still spells out.
_NAMED = 20


def fitted(state: RunState, event: ev.Event) -> ev.Event:
    """``event`` cut so that the log can hold it, if (and only if) it could not.

    Every event whose size grows with an input or a plan passes here
    (:data:`GROWING`). One that fits the run's recorded event limit is
    returned as it is, so a log written before this rule decides the same; one
    over it could never have been appended, so no log holds it uncut and
    replay, seeing the same facts and limit, cuts at the same point. A list is
    cut to what fits in half the limit ("... and N more"); if the event is
    still over, each listed text and the reason are cut too; a
    :class:`TaskEscalated` still over then drops its candidate.
    """
    limit = state.max_event_bytes
    if limit is None or not over_the_limit(event, limit):
        return event
    if isinstance(event, ev.OutputRejected | ev.PlanRejected):
        event = _fewer_items(event, limit)  # what 0.1 did: keep its cuts byte for byte
        if over_the_limit(event, limit):
            event = _shorter_items(event)
    elif isinstance(event, ev.RunWaiting):
        waiting = event
        names = _fewer(waiting.escalations, limit)
        event = msgspec.structs.replace(
            waiting, escalations=names, reason=(
                "Nothing can proceed until escalation(s) are resolved: "
                f"{_named(waiting.escalations)}."))
    elif isinstance(event, ev.RunResumed):
        resumed = event
        lost = resumed.interrupted
        event = msgspec.structs.replace(
            resumed, interrupted=_fewer(lost, limit), reason=(
                f"Resumed by {_cut(resumed.by, 200)}; {len(lost):,} attempt(s) had no "
                f"recorded outcome: {_named(lost)}."))
    if over_the_limit(event, limit):
        event = msgspec.structs.replace(event, reason=_cut(event.reason, _REASON_CHARS))
    if isinstance(event, ev.TaskEscalated) and over_the_limit(event, limit):
        escalated = event
        size = len(encode_json(escalated.candidate))
        event = msgspec.structs.replace(
            escalated, candidate=None, reason=escalated.reason + (
                f" (The candidate output, {size:,} bytes, is left out: with this reason it "
                "is over the limit of one logged event.)"))
    return event


#: The events :meth:`Decision.emit` measures: their size grows with input or plan size.
GROWING: frozenset[type[ev.Event]] = frozenset({
    ev.OutputRejected, ev.PlanRejected, ev.TaskEscalated, ev.RunWaiting, ev.RunResumed})


def over_the_limit(event: ev.Event, limit: int) -> bool:
    """Whether the store would refuse ``event`` as too large (it measures the same bytes)."""
    return len(ev.encode_event(event)) > limit


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 20] + f"... ({len(text):,} chars)"


def _named(names: list[str]) -> str:
    shown = ", ".join(_cut(n, 200) for n in names[:_NAMED])
    return shown + (f" and {len(names) - _NAMED:,} more" if len(names) > _NAMED else "")


def _fewer(items: list[str], limit: int) -> list[str]:
    keep = len(items)
    while keep > 1 and len(encode_json(items[:keep])) > limit // 2:
        keep //= 2
    return items[:keep]


_Listing = ev.OutputRejected | ev.PlanRejected


def _fewer_items(event: _Listing, limit: int) -> _Listing:
    items: list[Any] = (event.errors if isinstance(event, ev.OutputRejected)
                        else event.problems)
    if len(items) <= 1:
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


def _shorter_items(event: _Listing) -> _Listing:
    if isinstance(event, ev.OutputRejected):
        return msgspec.structs.replace(
            event, errors=[_cut(e, _ITEM_CHARS) for e in event.errors])
    return msgspec.structs.replace(event, problems=[
        msgspec.structs.replace(p, message=_cut(p.message, _ITEM_CHARS)) for p in event.problems])


def retry_or_escalate(
    d: Decision, task: TaskState, spec: AgentSpec, *, kind: str, why: str, candidate: Any
) -> None:
    """After a failed attempt: retry with backoff, or escalate when retrying is not allowed.

    Escalates an agent that is not safe to repeat, one out of attempts, or a
    run out of budget (recording the exhausted retry budget first).

    Example::

        retry_or_escalate(d, task, spec, kind="agent_error", why="Agent 'a' raised.",
                          candidate=None)   # RetryScheduled or TaskEscalated
    """
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


def _over_cost_budget(state: RunState) -> bool:
    """Whether the cost agents reported is over a budget the run has and has not yet spent."""
    return (state.max_cost is not None and not state.budget_exhausted
            and state.cost > state.max_cost)


def check_cost(d: Decision) -> None:
    """Record BudgetExhausted once the cost agents reported is over the run's ``max_cost``.

    Example::

        check_cost(d)   # after an outcome that reported a cost
    """
    state = d.state
    if _over_cost_budget(state):
        assert state.max_cost is not None  # _over_cost_budget is False without a budget
        d.emit(ev.BudgetExhausted(
            kind="max_cost", limit=state.max_cost, spent=state.cost,
            reason=f"Agents have reported a cost of {state.cost:.4g}, over the run's budget of "
            f"{state.max_cost:.4g}; nothing more is dispatched without a person's say.",
        ))


def succeed(d: Decision, task: TaskState, reason: str) -> None:
    """Mark ``task`` succeeded and make ready each dependent with nothing left to wait for.

    Example::

        succeed(d, task, "Its output passed Out validation.")
    """
    d.emit_task(task, ev.TaskSucceeded(task_id=task.id, reason=reason))
    tasks = d.state.tasks
    for dep_id in task.dependents:
        dependent = tasks[dep_id]
        if dependent.unmet == 0 and dependent.status is TaskStatus.PENDING:
            d.emit_task(dependent, ev.TaskReady(
                task_id=dep_id,
                reason=f"All it needs has succeeded ({', '.join(dependent.needs)}).",
            ))


def skip_dependents(d: Decision, root: TaskState) -> None:
    """Skip every pending task that needs ``root``, directly or through others (iterative).

    Example::

        skip_dependents(d, abandoned_task)
    """
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


def dispatch(d: Decision, task: TaskState, *, reason: str, same_attempt: bool = False) -> None:
    """Dispatch ``task``: build its input, check it fits one event, emit TaskDispatched.

    ``same_attempt`` re-dispatches the attempt a crash left without an outcome
    (same input, same idempotency key); an input that cannot be built or is
    too large escalates instead.

    Example::

        dispatch(d, task, reason="Ready and within the concurrency limit.")
    """
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


def progress(d: Decision) -> None:
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
                dispatch(d, task, reason=(
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
