"""The JSON documents of ``runs --json`` and ``show --json``: stable keys for scripts.

The keys are a promise (a test pins them): new keys may be added, none is
renamed or removed without a major version. Times are ISO 8601 in UTC.

``runs --json`` prints ``{"runs": [RUN, ...]}`` where each RUN is::

    {"run_id", "workflow", "status", "events", "created_at", "updated_at", "reason"}

``show --json`` prints one object::

    {"run_id", "workflow", "workflow_ref", "status", "reason", "events", "goal",
     "budget": {"retries_used", "max_retries", "tokens", "cost", "max_cost", "exhausted"},
     "tasks": [{"id", "agent", "status", "attempts", "needs", "output", "last_error",
                "idempotency_key", "resolved_by"}, ...],
     "escalations": [{"task_id", "kind", "reason"}, ...],
     "forked_from": {"run_id", "seq"} | null,
     "steps": [{"task_id", "attempt", "index", "name", "kind", "model", "tool", "tokens",
                "cost", "duration_ms", "outcome", "error_type", "message", "side_effect",
                "seq", "request_summary", "result_summary"}, ...],
     "step_totals": {"steps", "llm_calls", "tool_calls", "tokens", "cost"}}

``steps`` are the run's journaled steps grouped under their task's attempt
(see :mod:`ledgerflow.replay.step_view`); their requests and results are cut
to summaries (``log --format jsonl`` holds them whole).

Example::

    docs = runs_document(await store.runs(), reasons)
    print(json.dumps(docs))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ledgerflow.eventstore import RunSummary
from ledgerflow.machines import RunState, StepView, step_totals
from ledgerflow.replay.step_view import by_attempt, step_document

__all__ = ["RUN_KEYS", "SHOW_KEYS", "TASK_KEYS", "run_document", "runs_document", "show_document",
           "steps_documents"]

RUN_KEYS = ("run_id", "workflow", "status", "events", "created_at", "updated_at", "reason")
TASK_KEYS = ("id", "agent", "status", "attempts", "needs", "output", "last_error",
             "idempotency_key", "resolved_by")
SHOW_KEYS = ("run_id", "workflow", "workflow_ref", "status", "reason", "events", "goal",
             "budget", "tasks", "escalations", "forked_from", "steps", "step_totals")


def run_document(summary: RunSummary, reason: str = "") -> dict[str, Any]:
    """One run of ``runs --json``."""
    return {
        "run_id": summary.run_id,
        "workflow": summary.label,
        "status": summary.status,
        "events": summary.last_seq,
        "created_at": summary.created_at.isoformat(),
        "updated_at": summary.updated_at.isoformat(),
        "reason": reason,
    }


def runs_document(runs: Sequence[RunSummary], reasons: Mapping[str, str]) -> dict[str, Any]:
    """The whole ``runs --json`` document."""
    return {"runs": [run_document(r, reasons.get(r.run_id, "")) for r in runs]}


def steps_documents(state: RunState, steps: Sequence[StepView]) -> dict[str, Any]:
    """``{"steps": [...], "step_totals": {...}}``: the run's steps under their attempts.

    Shared by ``show --json`` and ``replay --json``.
    """
    groups = by_attempt(steps, list(state.tasks))
    return {
        "steps": [step_document(view) for _, _, views in groups for view in views],
        "step_totals": step_totals(steps),
    }


def show_document(state: RunState, steps: Sequence[StepView] = ()) -> dict[str, Any]:
    """The ``show --json`` document of a run's state and its journaled ``steps``."""
    return {
        "run_id": state.run_id,
        "workflow": state.workflow,
        "workflow_ref": state.workflow_ref,
        "status": state.status.value,
        "reason": state.reason,
        "events": state.seq,
        "goal": state.goal,
        "budget": {
            "retries_used": state.retries_used,
            "max_retries": state.max_retries,
            "tokens": state.tokens,
            "cost": state.cost,
            "max_cost": state.max_cost,
            "exhausted": state.budget_exhausted,
        },
        "tasks": [
            {
                "id": t.id,
                "agent": t.agent,
                "status": t.status.value,
                "attempts": t.attempt,
                "needs": list(t.needs),
                "output": t.output,
                "last_error": t.last_error,
                "idempotency_key": t.idempotency_key,
                "resolved_by": t.resolved_by,
            }
            for t in state.tasks.values()
        ],
        "escalations": [
            {"task_id": e.task_id, "kind": e.kind, "reason": e.reason}
            for e in state.escalations.values()
        ],
        "forked_from": (
            {"run_id": state.forked_from[0], "seq": state.forked_from[1]}
            if state.forked_from else None
        ),
        **steps_documents(state, steps),
    }
