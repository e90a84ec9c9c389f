"""The run page's document: everything the page shows, folded from the log once, redacted.

One pass over the log with :func:`ledgerflow.machines.evolve` (the same fold
``ledgerflow replay --to N --json`` makes) records, per event, which tasks
changed status (``"status": {task: status}``), so the page gets the task
states at ANY seq by applying those changes up to it, never by knowing the
transition rules itself. The same pass cuts the log into attempts (dispatch
to outcome, with their journaled steps from
:func:`ledgerflow.machines.steps_of`) and keeps, per event, what its detail
panel shows: the reason, the state diff (structured, so secret fields can
be masked by name), and the exact input an agent got or output it returned.

The document (keys are stable for the page's script; new ones may be added)::

    {"kind": "ledgerflow-run-page", "version": 1,
     "run": {"run_id", "workflow", "workflow_ref", "status", "reason", "events",
             "started_at", "ended_at", "duration_ms", "budget", "forked_from", "totals"},
     "goal": {...},
     "tasks": [{"id", "agent", "needs", "depth", "status", "attempts", "input", "output",
                "last_error", "resolved_by"}],
     "attempts": [{"task", "attempt", "start_seq", "start_t", "end_seq", "end_t", "outcome",
                   "marks", "timeout_s", "error", "steps": [STEP + {"t"}]}],
     "events": [{"seq", "t", "type", "machine", "reason", "trigger"?, "src"?, "dst"?,
                 "task"?, "attempt"?, "trouble"?, "status"?: {task: status},
                 "changes"?: [{"task", "field", "before", "after"}],
                 "input"?, "output"?, "candidate"?, "data"?, "step_seq"?, "request"?,
                 "result"?}],
     "planner_steps": [STEP],
     "escalations": [{"task_id", "agent", "kind", "reason", "candidate", "seq", "requested",
                      "output_schema"}]}

``t`` is milliseconds since the run's first event; STEP is a
:func:`ledgerflow.replay.step_view.step_document` without its task, attempt
and summaries, and empty values left out; a step event's ``step_seq`` names
the step (by its ``seq``) in its attempt's list, ``request`` and ``result``
are the step's whole request and result. An attempt's ``outcome``
is ``running``, ``received``, ``ok``, ``failed``, ``timeout``, ``rejected``,
``escalated``, ``abandoned`` or ``interrupted``; ``marks`` lists every one it
went through (and ``retried`` when a retry followed).

Example::

    doc = await page_document(store, run_id)            # the recorded workflow, if found
    html = render_run_page(doc, api=None)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

from ledgerflow.console.redaction import redact_run_document, redact_schema
from ledgerflow.eventstore import Envelope, EventStore
from ledgerflow.machines import (
    Event,
    RunNotFoundError,
    RunState,
    TaskStatus,
    Workflow,
    evolve,
    step_totals,
    steps_of,
)
from ledgerflow.machines import events as ev
from ledgerflow.machines.event_base import TaskEvent
from ledgerflow.replay.commands import recorded_workflow
from ledgerflow.replay.step_view import step_document, views_by_row
from ledgerflow.replay.steps import _TROUBLE  # the stepper's failures and escalations
from ledgerflow.replay.timeline import decode_log

__all__ = ["PAGE_KIND", "build_page_document", "page_document", "task_depths"]

PAGE_KIND = "ledgerflow-run-page"

#: Event fields the detail panel shows elsewhere (or never: the plan is the task list).
_LIFTED = frozenset({"type", "task_id", "src", "dst", "reason", "attempt", "input", "output",
                     "candidate", "request", "result", "goal"})
#: Outcomes after which an attempt's bar stops growing: a person or a rule takes over.
_CLOSING = frozenset({"escalated", "abandoned", "interrupted"})
_TASK_FIELDS = ("status", "attempt", "input", "idempotency_key", "output", "confidence",
                "last_error", "resolved_by")


async def page_document(store: EventStore, run_id: str, *,
                        workflow: Workflow | None = None) -> dict[str, Any]:
    """The run page's document for ``run_id``, with secret fields masked.

    ``workflow`` gives the contracts (for masking and the escalation form's
    schema); without it the workflow the run recorded is used when it can
    be found here (as ``verify`` finds it), else secret-looking key names
    are masked and escalations carry no schema. Raises
    :class:`~ledgerflow.machines.RunNotFoundError` for an empty log.

    Example::

        doc = await page_document(store, "8284ea1ae9d1")
        doc["events"][0]["type"]   # 'RunStarted'
    """
    envelopes = await store.read_all(run_id)
    if not envelopes:
        raise RunNotFoundError(run_id)
    if workflow is None:
        workflow, _ = recorded_workflow(run_id, envelopes)
    return redact_run_document(build_page_document(run_id, envelopes, workflow), workflow)


def task_depths(needs: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Each task's layer in the plan graph: 0 for no needs, else 1 + its deepest need.

    Iterative (a 1,000-task chain needs no recursion); a task caught in a
    cycle (a plan the checks refused) or needing an unknown task gets 0.

    Example::

        >>> task_depths({"a": [], "b": ["a"], "c": ["a", "b"]})
        {'a': 0, 'b': 1, 'c': 2}
    """
    depth = dict.fromkeys(needs, 0)
    waiting = {tid: sum(1 for n in deps if n in needs) for tid, deps in needs.items()}
    dependents: dict[str, list[str]] = {}
    for tid, deps in needs.items():
        for need in deps:
            if need in needs:
                dependents.setdefault(need, []).append(tid)
    queue = [tid for tid, count in waiting.items() if count == 0]
    while queue:
        tid = queue.pop()
        for child in dependents.get(tid, ()):
            depth[child] = max(depth[child], depth[tid] + 1)
            waiting[child] -= 1
            if waiting[child] == 0:
                queue.append(child)
    return depth


def _ms(at: datetime, t0: datetime) -> float:
    return round((at - t0).total_seconds() * 1000, 3)


def _run_view(state: RunState) -> dict[str, Any]:
    return {
        "status": state.status.value,
        "retries_used": state.retries_used,
        "tokens": state.tokens,
        "cost": round(state.cost, 6),
        "budget_exhausted": state.budget_exhausted,
        "escalations": sorted(state.escalations),
    }


def _task_view(state: RunState, task_id: str | None) -> dict[str, Any] | None:
    task = state.tasks.get(task_id) if task_id is not None else None
    if task is None:
        return None
    return {"status": task.status.value, "attempt": task.attempt, "input": task.input,
            "idempotency_key": task.idempotency_key, "output": task.output,
            "confidence": task.confidence, "last_error": task.last_error,
            "resolved_by": task.resolved_by}


class _Fold:
    """The state of the one pass: the run state, attempts, and the status mirror."""

    def __init__(self, run_id: str) -> None:
        self.state = RunState(run_id=run_id)
        self.statuses: dict[str, str] = {}
        self.attempts: list[dict[str, Any]] = []
        self.by_key: dict[tuple[str, int], dict[str, Any]] = {}
        self.current: dict[str, dict[str, Any]] = {}
        self.escalated_at: dict[str, int] = {}

    def status_changes(self, task_id: str | None, before: TaskStatus | None,
                       count_before: int, counts_before: dict[TaskStatus, int]
                       ) -> dict[str, str]:
        """Tasks whose status this event changed (exact: checked against the counters)."""
        state = self.state
        changed: dict[str, str] = {}
        expected = counts_before
        task = state.tasks.get(task_id) if task_id is not None else None
        if task is not None and task.status is not before:
            changed[task.id] = task.status.value
            self.statuses[task.id] = task.status.value
            expected = dict(counts_before)
            if before is not None:
                expected[before] -= 1
            expected[task.status] = expected.get(task.status, 0) + 1
        if len(state.tasks) == count_before and state.counts == expected:
            return changed
        # The event moved other tasks too (a plan, a skip cascade): compare them all.
        for tid, other in state.tasks.items():
            value = other.status.value
            if self.statuses.get(tid) != value:
                self.statuses[tid] = value
                changed[tid] = value
        return changed

    def attempt_event(self, event: Event, task_id: str, seq: int, t: float) -> int | None:
        """Fold a task event into its attempt; the attempt number it belongs to, if any."""
        if isinstance(event, ev.TaskDispatched):
            previous = self.current.get(task_id)
            if previous is not None and previous["outcome"] == "running":
                previous["outcome"] = "interrupted"
                previous["marks"].append("interrupted")
            row: dict[str, Any] = {
                "task": task_id, "attempt": event.attempt, "start_seq": seq, "start_t": t,
                "end_seq": seq, "end_t": t, "outcome": "running", "marks": [],
                "timeout_s": event.timeout_s, "error": None, "steps": []}
            self.attempts.append(row)
            self.by_key[(task_id, event.attempt)] = row
            self.current[task_id] = row
            return event.attempt
        attempt = getattr(event, "attempt", None)
        found = (self.by_key.get((task_id, attempt)) if isinstance(attempt, int)
                 else self.current.get(task_id))
        if found is None:
            return attempt if isinstance(attempt, int) else None
        row = found
        outcome = _outcome(event, row)
        if isinstance(event, ev.TimerFired | ev.TaskReady | ev.EscalationResolved
                      | ev.ResolutionRequested | ev.TaskSkipped):
            return row["attempt"] if attempt is not None else None
        if row["outcome"] in _CLOSING and outcome is None:
            return int(row["attempt"])
        row["end_seq"], row["end_t"] = seq, t
        if outcome is not None:
            row["outcome"] = outcome
            if outcome != "received" and outcome not in row["marks"]:
                row["marks"].append(outcome)
            if outcome in _CLOSING:
                self.current.pop(task_id, None)
        if isinstance(event, ev.AgentFailed):
            row["error"] = f"{event.error_type}: {event.message}" if event.message \
                else event.error_type
        elif isinstance(event, ev.OutputRejected) and event.errors:
            row["error"] = "; ".join(event.errors)
        return int(row["attempt"])


def _outcome(event: Event, row: dict[str, Any]) -> str | None:
    if isinstance(event, ev.OutputReceived):
        return "received"
    if isinstance(event, ev.AgentFailed):
        return "timeout" if event.timed_out else "failed"
    if isinstance(event, ev.OutputAccepted):
        return "ok"
    if isinstance(event, ev.OutputRejected):
        return "rejected"
    if isinstance(event, ev.TaskEscalated):
        return "escalated"
    if isinstance(event, ev.TaskAbandoned):
        return "abandoned"
    if isinstance(event, ev.TaskSucceeded):
        return "ok" if row["outcome"] in ("received", "ok", "running") else None
    if isinstance(event, ev.RetryScheduled) and "retried" not in row["marks"]:
        row["marks"].append("retried")
    return None


def _changes(run_before: dict[str, Any], run_after: dict[str, Any], task_id: str | None,
             task_before: dict[str, Any] | None, task_after: dict[str, Any] | None
             ) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"task": None, "field": key, "before": run_before[key], "after": value}
        for key, value in run_after.items() if run_before[key] != value]
    if task_after is not None:
        before = task_before or {}
        out += [{"task": task_id, "field": key, "before": before.get(key), "after": value}
                for key, value in task_after.items() if before.get(key) != value]
    return out


def _event_entry(seq: int, event: Event, t: float, task_id: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"seq": seq, "t": t, "type": event.type, "machine": event.machine,
                             "reason": event.reason}
    # A fact moves no machine: no trigger, src or dst (left out: 20,000 events add up).
    for key, value in (("trigger", event.trigger), ("src", event.src), ("dst", event.dst)):
        if value:
            entry[key] = value
    if task_id is not None:
        entry["task"] = task_id
    if event.type in _TROUBLE:
        entry["trouble"] = True
    for key in ("input", "output", "candidate"):
        value = getattr(event, key, None)
        if value is not None:
            entry[key] = value
    if isinstance(event, ev.PlanProposed) and event.plan is not None:
        entry["output"] = event.plan  # the planner's answer, verbatim
    data = _data(event)
    if data:
        entry["data"] = data
    return entry


def _data(event: Event) -> dict[str, Any]:
    if isinstance(event, ev.PlanAccepted):
        return {"tasks": len(event.tasks)}  # the plan itself is the task list
    if isinstance(event, ev.PlanProposed):
        return {"error": event.error} if event.error else {}
    if isinstance(event, ev.StepRecorded | ev.StepStarted):
        return {}  # the step's own document (in its attempt) says it all
    built = msgspec.to_builtins(event)
    return {k: v for k, v in built.items() if k not in _LIFTED} if isinstance(built, dict) \
        else {}


def build_page_document(run_id: str, envelopes: Sequence[Envelope],
                        workflow: Workflow | None = None) -> dict[str, Any]:
    """The page document of a log, NOT redacted (:func:`page_document` masks it).

    ``workflow`` only adds each open escalation's output contract schema.
    """
    decoded = decode_log(run_id, envelopes)
    fold = _Fold(run_id)
    state = fold.state
    t0 = decoded[0][0].at if decoded else None
    events: list[dict[str, Any]] = []
    times: dict[int, float] = {}
    for env, event in decoded:
        t = _ms(env.at, t0) if t0 is not None else 0.0
        times[env.seq] = t
        task_id = event.task_id if isinstance(event, TaskEvent) else None
        task = state.tasks.get(task_id) if task_id is not None else None
        status_before = task.status if task is not None else None
        count_before, counts_before = len(state.tasks), dict(state.counts)
        run_before, task_before = _run_view(state), _task_view(state, task_id)
        evolve(state, event)
        entry = _event_entry(env.seq, event, t, task_id)
        if task_id is not None and task_id in state.tasks:
            attempt = fold.attempt_event(event, task_id, env.seq, t)
            if attempt is not None:
                entry["attempt"] = attempt
        if isinstance(event, ev.RunResumed):
            for tid in event.interrupted:
                open_row = fold.current.get(tid)
                if open_row is not None and open_row["outcome"] == "running":
                    open_row["outcome"] = "interrupted"
                    open_row["marks"].append("interrupted")
        if isinstance(event, ev.TaskEscalated):
            fold.escalated_at[event.task_id] = env.seq
        changed = fold.status_changes(task_id, status_before, count_before, counts_before)
        if changed:
            entry["status"] = changed
        diff = _changes(run_before, _run_view(state), task_id, task_before,
                        _task_view(state, task_id))
        if diff:
            entry["changes"] = diff
        events.append(entry)
    views = steps_of((env.seq, event) for env, event in decoded)
    _attach_steps(fold, events, views, times, decoded)
    doc: dict[str, Any] = {
        "kind": PAGE_KIND, "version": 1,
        "run": _run_summary(state, decoded, fold, views),
        "goal": state.goal,
        "tasks": _tasks(state),
        "attempts": fold.attempts,
        "events": events,
        "planner_steps": [_step(v, times) for v in views if v.task_id == "$planner"],
        "escalations": _escalations(state, fold, workflow),
    }
    return doc


def _attach_steps(fold: _Fold, events: list[dict[str, Any]], views: Sequence[Any],
                  times: dict[int, float], decoded: Sequence[tuple[Envelope, Event]]) -> None:
    if not views:
        return
    for view in views:
        row = fold.by_key.get((view.task_id, view.attempt))
        if row is not None:
            row["steps"].append(_step(view, times))
    at = {entry["seq"]: entry for entry in events}
    rows = [_Seq(env.seq, event) for env, event in decoded]
    for seq, view in views_by_row(rows, views).items():
        entry = at[seq]
        entry["step_seq"] = view.seq  # where its attempt's "steps" list has it
        entry["request"] = view.request
        if view.seq == seq and not view.outcome_unknown:
            entry["result"] = view.result


#: Keys of a step document the page does not need (implied by its attempt, or
#: the summaries of what its event holds whole).
_STEP_DROPPED = frozenset({"task_id", "attempt", "request_summary", "result_summary"})


def _step(view: Any, times: dict[int, float]) -> dict[str, Any]:
    doc = step_document(view)
    out = {k: v for k, v in doc.items()
           if k not in _STEP_DROPPED and not (v is None or v is False or v == "")}
    out["t"] = times.get(view.seq, 0.0)
    return out


class _Seq:
    """A (seq, event) pair shaped like a log row, for :func:`views_by_row`."""

    __slots__ = ("event", "seq")

    def __init__(self, seq: int, event: Event) -> None:
        self.seq = seq
        self.event = event


def _run_summary(state: RunState, decoded: Sequence[tuple[Envelope, Event]], fold: _Fold,
                 views: Sequence[Any]) -> dict[str, Any]:
    first, last = decoded[0][0].at, decoded[-1][0].at
    by_status: dict[str, int] = {}
    for task in state.tasks.values():
        by_status[task.status.value] = by_status.get(task.status.value, 0) + 1
    return {
        "run_id": state.run_id,
        "workflow": state.workflow,
        "workflow_ref": state.workflow_ref,
        "status": state.status.value,
        "reason": state.reason,
        "events": decoded[-1][0].seq,
        "started_at": first.isoformat(),
        "ended_at": last.isoformat(),
        "duration_ms": _ms(last, first),
        "budget": state.to_dict()["budget"],
        "forked_from": list(state.forked_from) if state.forked_from else None,
        "totals": {
            "tasks": len(state.tasks),
            "by_status": by_status,
            "attempts": len(fold.attempts),
            "retries": state.retries_used,
            "tokens": state.tokens,
            "cost": state.cost,
            "escalations": len(state.escalations),
            **{f"step_{k}" if k != "steps" else k: v for k, v in step_totals(views).items()},
        },
    }


def _tasks(state: RunState) -> list[dict[str, Any]]:
    depths = task_depths({tid: t.needs for tid, t in state.tasks.items()})
    return [{"id": t.id, "agent": t.agent, "needs": list(t.needs), "depth": depths[t.id],
             "status": t.status.value, "attempts": t.attempt, "input": t.input,
             "output": t.output, "last_error": t.last_error, "resolved_by": t.resolved_by}
            for t in state.tasks.values()]


def _escalations(state: RunState, fold: _Fold, workflow: Workflow | None
                 ) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for tid, esc in state.escalations.items():
        task = state.tasks.get(tid)
        agent = task.agent if task is not None else None
        spec = workflow.agents.get(agent) if workflow is not None and agent else None
        out.append({
            "task_id": tid, "agent": agent, "kind": esc.kind, "reason": esc.reason,
            "candidate": esc.candidate, "seq": fold.escalated_at.get(tid),
            "requested": tid in state.requested,
            "output_schema": (redact_schema(spec.output.model_json_schema())
                              if spec is not None else None),
        })
    return out
