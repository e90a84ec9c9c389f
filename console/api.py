"""The console's JSON API, as plain async functions of a store (no web framework here).

:mod:`ledgerflow.console.server` maps each to a route; a service can call
them directly too. Every document is masked by
:mod:`ledgerflow.console.redaction` before it leaves: a field a contract
marks secret (``SecretStr``, ``Field(json_schema_extra={"redact": True})``)
is never in an answer.

- :func:`runs_document` — ``GET /api/runs``: the ``runs --json`` document.
- :func:`run_document` — ``GET /api/runs/{id}``: the ``replay RUN --json`` one.
- :func:`events_document` — ``GET /api/runs/{id}/events``: the envelopes.
- :func:`escalations_document` — ``GET /api/escalations``: the inbox.
- :func:`resolve_task` — ``POST /api/runs/{id}/tasks/{task}/resolve``, in
  :mod:`ledgerflow.console.resolving`.

A refusal is an :class:`ApiError`: an HTTP status and
``{"errors": [{"loc": [...], "msg": ...}]}``.

Example::

    book = WorkflowBook([travel.wf])
    doc = await run_document(store, "8284ea1ae9d1", book)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from ledgerflow.errors import LedgerflowError
from ledgerflow.eventstore import Envelope, EventStore
from ledgerflow.machines import RunNotFoundError, RunState, RunStatus, Workflow
from ledgerflow.machines.events import PlanAccepted, RunStarted, RunSubmitted
from ledgerflow.replay import audit, documents
from ledgerflow.replay.errors import RunIdAmbiguousError
from ledgerflow.replay.runids import resolve_run_id
from ledgerflow.replay.timeline import decode_log, rebuild

__all__ = [
    "MAX_EVENTS_PAGE",
    "MAX_RUNS",
    "ApiError",
    "WorkflowBook",
    "error",
    "escalations_document",
    "events_document",
    "find_run",
    "json_ready",
    "output_schema",
    "page_document",
    "read_run",
    "run_document",
    "runs_document",
]

#: The most events one ``GET /api/runs/{id}/events`` returns.
MAX_EVENTS_PAGE = 5000
#: The most runs one ``GET /api/runs`` (and the inbox) looks at.
MAX_RUNS = 1000


def error(msg: str, *loc: str | int) -> dict[str, Any]:
    """One entry of an error document: ``{"loc": [...], "msg": ...}``."""
    return {"loc": list(loc), "msg": msg}


class ApiError(LedgerflowError):
    """A refused request: its HTTP ``status`` and the ``errors`` to answer with.

    Example::

        raise ApiError(404, [error("No run 'r1' in this store.")])
    """

    def __init__(self, status: int, errors: list[dict[str, Any]]) -> None:
        self.status = status
        self.errors = errors
        super().__init__("; ".join(str(e["msg"]) for e in errors))

    def document(self) -> dict[str, Any]:
        return {"errors": self.errors}


class WorkflowBook:
    """The workflows the console knows: those it was given, by name, else each run's own.

    A run's recorded workflow is looked up (registry, entry points, its
    module) once per name and ref; one that cannot be loaded is None, so
    the console still shows the run, judging secrets by key names.

    Example::

        book = WorkflowBook([travel.wf])
        wf = book.find("travel", "ledgerflow.examples.travel:wf")
    """

    def __init__(self, given: Sequence[Workflow] = ()) -> None:
        self.given = {wf.name: wf for wf in given}
        self._found: dict[tuple[str, str], Workflow | None] = {}

    def find(self, name: str, ref: str) -> Workflow | None:
        if name in self.given:
            return self.given[name]
        key = (name, ref)
        if key not in self._found:
            from ledgerflow.machines import load_workflow  # noqa: PLC0415 - imports user code

            try:
                self._found[key] = load_workflow(ref, name)
            except Exception:  # a user's module may fail to import in any way
                self._found[key] = None
        return self._found[key]

    def for_state(self, state: RunState) -> Workflow | None:
        return self.find(state.workflow, state.workflow_ref)


def _redaction() -> Any:
    # The page helper's module; imported here so the API fails closed if it is missing.
    from ledgerflow.console import redaction  # noqa: PLC0415

    return redaction


def json_ready(doc: Any) -> Any:
    """``doc`` as ``json.dumps(..., default=str)`` writes it: what the CLI prints."""
    return json.loads(json.dumps(doc, default=str))


async def find_run(store: EventStore, run_id: str) -> str:
    """The run ``run_id`` (or a unique prefix of one) names; ApiError 404 / 400 otherwise."""
    try:
        return await resolve_run_id(store, run_id)
    except RunNotFoundError:
        raise ApiError(404, [error(f"No run '{run_id}' in this store.", "path", "run_id")]) \
            from None
    except RunIdAmbiguousError as exc:
        raise ApiError(400, [error(str(exc), "path", "run_id")]) from None


async def read_run(store: EventStore, run_id: str) -> tuple[str, list[Envelope]]:
    """The run's id and its whole log; ApiError 404 when there is none."""
    rid = await find_run(store, run_id)
    envs = await store.read_all(rid)
    if not envs:
        raise ApiError(404, [error(f"No run '{run_id}' in this store.", "path", "run_id")])
    return rid, envs


def _int_param(raw: str | None, name: str, *, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(422, [error(f"must be an integer from {low} to {high}", "query", name)])
    return int(raw)


async def runs_document(store: EventStore, *, status: str | None = None,
                        limit: str | None = None) -> dict[str, Any]:
    """``GET /api/runs?status=&limit=``: exactly what ``ledgerflow runs --json`` prints.

    Example::

        doc = await runs_document(store, status="waiting")
    """
    statuses = [s.value for s in RunStatus]
    if status is not None and status != "" and status not in statuses:
        raise ApiError(422, [error(f"must be one of {', '.join(statuses)}", "query", "status")])
    count = _int_param(limit, "limit", default=50, low=1, high=MAX_RUNS)
    found = await store.runs(status=status or None, limit=count)
    # The CLI's own reasons (its last decision, RunResumed bookkeeping skipped).
    reasons = await audit._last_reasons(store, found)  # one shared rule
    return json_ready(documents.runs_document(found, reasons))  # type: ignore[no-any-return]


async def run_document(store: EventStore, run_id: str, book: WorkflowBook, *,
                       to: str | None = None) -> dict[str, Any]:
    """``GET /api/runs/{id}?to=SEQ``: the ``replay RUN --json`` document, secrets masked.

    Example::

        doc = await run_document(store, run_id, book)
        doc["tasks"]["price"]["status"]      # 'escalated'
    """
    rid, envs = await read_run(store, run_id)
    last = envs[-1].seq
    at = _int_param(to, "to", default=last, low=1, high=last) if to else None
    doc = documents.replay_document(rid, envs, at)
    state = rebuild(rid, envs[:1])  # the workflow's name and ref are in the first event
    return _redaction().redact_run_document(doc, book.for_state(state))  # type: ignore[no-any-return]


class _Header(msgspec.Struct):
    workflow: str
    ref: str
    agents: dict[str, str]
    planned: bool


async def _header(store: EventStore, run_id: str) -> _Header:
    """The run's workflow and each task's agent, read from the start of its log."""
    head = _Header(workflow="", ref="", agents={}, planned=False)
    async for env in store.read(run_id):
        event = decode_log(run_id, [env])[0][1]
        if isinstance(event, RunStarted | RunSubmitted):
            head.workflow, head.ref = event.workflow, event.workflow_ref
        elif isinstance(event, PlanAccepted):
            head.agents = {t.id: t.agent for t in event.tasks}
            head.planned = True
            break
    return head


def _mask_event(data: Any, agents: Mapping[str, str], wf: Workflow | None) -> Any:
    """One event's data: task inputs/outputs/candidates by their contract, the goal by its
    own, every other key by its name."""
    red = _redaction()
    if not isinstance(data, dict):
        return red.redact(data, None)
    typed = {k: v for k, v in data.items() if k in ("input", "output", "candidate", "goal")}
    rest = red.redact({k: v for k, v in data.items() if k not in typed}, None)
    tid = data.get("task_id")
    tasks = {t: {"agent": a} for t, a in agents.items()}
    entry = {k: v for k, v in typed.items() if k != "goal"}
    if isinstance(tid, str):
        entry["task_id"] = tid
    masked = red.redact_run_document({"tasks": tasks, "events": [entry]}, wf)["events"][0]
    masked.pop("task_id", None)
    if "goal" in typed:
        masked["goal"] = red.redact_run_document({"goal": typed["goal"]}, wf)["goal"]
    return {k: masked[k] if k in typed else rest[k] for k in data}


async def events_document(store: EventStore, run_id: str, book: WorkflowBook, *,
                          after: str | None = None, limit: str | None = None) -> dict[str, Any]:
    """``GET /api/runs/{id}/events?after=N&limit=M``: the envelopes after seq N, data decoded.

    ``{"run_id", "last_seq", "next_after", "events": [{"seq", "type", "at", "data",
    "prev_hash", "hash"}, ...]}``; poll with ``after=next_after`` to follow a live run.

    Example::

        page = await events_document(store, run_id, book, after="20", limit="100")
    """
    rid = await find_run(store, run_id)
    last = await store.last_seq(rid)
    if last == 0:
        raise ApiError(404, [error(f"No run '{run_id}' in this store.", "path", "run_id")])
    start = _int_param(after, "after", default=0, low=0, high=last)
    count = _int_param(limit, "limit", default=1000, low=1, high=MAX_EVENTS_PAGE)
    envs = await store.read_all(rid, after=start, until=start + count)
    head = await _header(store, rid)
    wf = book.find(head.workflow, head.ref)
    events = [{
        "seq": env.seq,
        "type": env.type,
        "at": env.at.isoformat(),
        "data": _mask_event(json.loads(env.data), head.agents, wf),
        "prev_hash": env.prev_hash,
        "hash": env.hash,
    } for env in envs]
    return {"run_id": rid, "last_seq": last,
            "next_after": envs[-1].seq if envs else start, "events": events}


def output_schema(wf: Workflow | None, agent: str) -> dict[str, Any] | None:
    """The JSON schema of ``agent``'s output contract, or None when the workflow is not here.

    Example::

        output_schema(travel.wf, "pricing")["title"]      # 'PricingOutput'
    """
    if wf is None or agent not in wf.agents:
        return None
    return wf.spec(agent).output.model_json_schema()


async def escalations_document(store: EventStore, book: WorkflowBook) -> dict[str, Any]:
    """``GET /api/escalations``: every open escalation of the waiting runs (the inbox).

    ``{"escalations": [{"run_id", "workflow", "task_id", "agent", "kind", "reason",
    "candidate", "schema", "since"}, ...]}``, newest first; ``schema`` is the
    task's output contract as JSON schema (null when the workflow cannot be
    loaded here), ``candidate`` the output held back, masked by it. A pool
    run's escalation whose resolution is already queued is left out.

    Example::

        inbox = await escalations_document(store, book)
    """
    red = _redaction()
    entries: list[dict[str, Any]] = []
    for summary in await store.runs(status=RunStatus.WAITING.value, limit=MAX_RUNS):
        envs = await store.read_all(summary.run_id)
        if not envs:
            continue
        state = rebuild(summary.run_id, envs)
        wf = book.for_state(state)
        for esc in state.escalations.values():
            if esc.task_id in state.requested:
                continue
            task = state.tasks.get(esc.task_id)
            agent = task.agent if task else ""
            schema = output_schema(wf, agent)
            entries.append({
                "run_id": state.run_id,
                "workflow": state.workflow,
                "task_id": esc.task_id,
                "agent": agent,
                "kind": esc.kind,
                "reason": esc.reason,
                "candidate": red.redact(json_ready(esc.candidate), schema),
                # Without a secret field's default or examples: the form shows none.
                "schema": None if schema is None else red.redact_schema(schema),
                "since": summary.updated_at.isoformat(),
            })
    return {"escalations": entries}


async def page_document(store: EventStore, run_id: str, book: WorkflowBook) -> dict[str, Any]:
    """``GET /api/runs/{id}/page``: what the run page draws, secrets masked.

    Example::

        doc = await page_document(store, run_id, book)
    """
    from ledgerflow.console import page_data  # noqa: PLC0415 - the page helper's module

    rid, envs = await read_run(store, run_id)
    wf = book.for_state(rebuild(rid, envs[:1]))
    doc = await page_data.page_document(store, rid, workflow=wf)
    return _redaction().redact_run_document(json_ready(doc), wf)  # type: ignore[no-any-return]
