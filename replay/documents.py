"""The JSON documents of ``runs --json`` and ``show --json``: stable keys for scripts.

The keys are a promise (a test pins them): new keys may be added, none is
renamed or removed without a major version. Times are ISO 8601 in UTC.

``runs --json`` prints ``{"runs": [RUN, ...]}`` where each RUN is::

    {"run_id", "workflow", "status", "events", "created_at", "updated_at", "reason", "owner"}

``owner`` is the worker holding the run's live lease (``host:pid:suffix``),
null when no worker drives it.

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

``replay RUN [--to SEQ] --json`` prints the run's state after that seq (the
keys of :meth:`RunState.to_dict`) with its ``steps`` and ``step_totals`` up to
it: :func:`replay_document`, which the console's ``GET /api/runs/{id}``
answers too.

``workers --json`` prints ``{"workers": [WORKER, ...]}`` where each WORKER is::

    {"worker_id", "alive", "host", "pid", "workflows", "concurrency", "started_at",
     "heartbeat_at", "expires_at", "heartbeat_age_s", "runs", "info"}

``runs`` are the run ids whose live lease the worker holds, ``info`` all it
registered; ``heartbeat_age_s`` is measured on this machine's clock (on
PostgreSQL the times are the server's; whether a worker is ``alive`` is the
store's verdict, by its own clock).

``steps`` are the run's journaled steps grouped under their task's attempt
(see :mod:`ledgerflow.replay.step_view`); their requests and results are cut
to summaries (``log --format jsonl`` holds them whole).

Example::

    docs = runs_document(await store.runs(), reasons)
    print(json.dumps(docs))
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ledgerflow.eventstore import Envelope, RunSummary, WorkerInfo
from ledgerflow.machines import RunState, StepView, step_totals, steps_of
from ledgerflow.replay.step_view import by_attempt, step_document
from ledgerflow.replay.timeline import decode_log, rebuild

__all__ = ["RUN_KEYS", "SHOW_KEYS", "TASK_KEYS", "WORKER_KEYS", "replay_document", "replay_view",
           "run_document", "runs_document", "show_document", "steps_documents",
           "worker_document", "workers_document"]

RUN_KEYS = ("run_id", "workflow", "status", "events", "created_at", "updated_at", "reason",
            "owner")
TASK_KEYS = ("id", "agent", "status", "attempts", "needs", "output", "last_error",
             "idempotency_key", "resolved_by")
SHOW_KEYS = ("run_id", "workflow", "workflow_ref", "status", "reason", "events", "goal",
             "budget", "tasks", "escalations", "forked_from", "steps", "step_totals")

WORKER_KEYS = ("worker_id", "alive", "host", "pid", "workflows", "concurrency", "started_at",
               "heartbeat_at", "expires_at", "heartbeat_age_s", "runs", "info")


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
        "owner": summary.owner,
    }


def runs_document(runs: Sequence[RunSummary], reasons: Mapping[str, str]) -> dict[str, Any]:
    """The whole ``runs --json`` document."""
    return {"runs": [run_document(r, reasons.get(r.run_id, "")) for r in runs]}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def worker_document(worker: WorkerInfo, *, now: float) -> dict[str, Any]:
    """One worker of ``workers --json``; ``now`` (epoch seconds) dates the heartbeat age."""
    workflows = worker.info.get("workflows", [])
    return {
        "worker_id": worker.worker_id,
        "alive": worker.alive,
        "host": worker.info.get("host"),
        "pid": worker.info.get("pid"),
        "workflows": list(workflows) if isinstance(workflows, list) else [workflows],
        "concurrency": worker.info.get("concurrency"),
        "started_at": _iso(worker.started_at),
        "heartbeat_at": _iso(worker.heartbeat_at),
        "expires_at": _iso(worker.expires_at),
        "heartbeat_age_s": round(max(now - worker.heartbeat_at, 0.0), 3),
        "runs": list(worker.runs),
        "info": worker.info,
    }


def workers_document(workers: Sequence[WorkerInfo], *, now: float) -> dict[str, Any]:
    """The whole ``workers --json`` document: ``{"workers": [...]}``, live workers first."""
    ordered = sorted(workers, key=lambda w: (not w.alive, -w.heartbeat_at))
    return {"workers": [worker_document(w, now=now) for w in ordered]}


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


def replay_view(run_id: str, envelopes: Sequence[Envelope],
                to: int | None = None) -> tuple[RunState, list[StepView]]:
    """The run's state after seq ``to`` (default: the last) and its steps up to it.

    Both folded from the log alone: what ``replay`` shows, as text or JSON.

    Example::

        state, steps = replay_view(run_id, await store.read_all(run_id), to=12)
    """
    state = rebuild(run_id, envelopes, at=to)
    steps = steps_of((env.seq, event) for env, event in decode_log(run_id, envelopes)
                     if to is None or env.seq <= to)
    return state, steps


def replay_document(run_id: str, envelopes: Sequence[Envelope],
                    to: int | None = None) -> dict[str, Any]:
    """The ``replay RUN [--to SEQ] --json`` document, as JSON data.

    Values JSON has no type for (a datetime) are their ``str``, as
    ``json.dumps(..., default=str)`` writes them; ``GET /api/runs/{id}``
    answers the same document.

    Example::

        doc = replay_document(run_id, await store.read_all(run_id), to=12)
        doc["seq"]          # 12
    """
    state, steps = replay_view(run_id, envelopes, to)
    doc = {**state.to_dict(), **steps_documents(state, steps)}
    return json.loads(json.dumps(doc, default=str))  # type: ignore[no-any-return]
