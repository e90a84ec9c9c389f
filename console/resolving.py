"""``POST /api/runs/{id}/tasks/{task}/resolve``: settle an escalation from the console.

The body is one JSON object with exactly one action, ``{"output": {...}}``,
``{"retry": true}`` or ``{"abandon": true}``, and optionally ``"note"`` and
``"by"`` (strings; ``by`` defaults to ``console:<client address>``). It goes
through :meth:`Orchestrator.resolve`, the very call ``ledgerflow resolve``
makes, so the output is validated against the task's contract exactly as
there, and a refused resolution appends nothing. As with the CLI, a plain
run is driven on in this process; a pool run (``ledgerflow submit``) gets a
``ResolutionRequested`` and goes back on the queue for a worker.

Answers: 200 with the run's ``replay --json`` document; 400 for a body that
is not strict JSON; 404 for no such run; 409 when another process drives the
run; 422 for anything the resolution itself gets wrong, with the output's
field errors located (``{"loc": ["output", "total"], "msg": ...}``).

Example::

    doc = await resolve_task(orch, store, book, run_id=run_id, task_id="price",
                             body=b'{"retry": true, "note": "rate confirmed"}', client="127.0.0.1")
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from ledgerflow.errors import LedgerflowError
from ledgerflow.eventstore import ConcurrencyError, EventStore, EventStoreError, LeaseLostError
from ledgerflow.machines import (
    Orchestrator,
    ResolutionError,
    RunBusyError,
    TaskStatus,
    WorkflowDefinitionError,
)
from ledgerflow.replay.cli_support import one_line
from ledgerflow.replay.errors import JsonArgumentError
from ledgerflow.replay.jsonargs import parse_json_text
from ledgerflow.replay.timeline import rebuild

from .api import ApiError, WorkflowBook, error, read_run, run_document

__all__ = ["BODY_KEYS", "resolve_task"]

#: The keys a resolve body may hold.
BODY_KEYS = ("output", "retry", "abandon", "note", "by")


def _parse(body: bytes) -> dict[str, Any]:
    try:
        value = parse_json_text(body.decode("utf-8"), "the request body")
    except UnicodeDecodeError:
        raise ApiError(400, [error("The request body is not UTF-8 text.", "body")]) from None
    except JsonArgumentError as exc:
        raise ApiError(400, [error(f"The request body {exc.problem}.", "body")]) from None
    if not isinstance(value, dict):
        raise ApiError(422, [error("The request body must be a JSON object.", "body")])
    return value


def _action(doc: dict[str, Any]) -> tuple[dict[str, Any] | None, bool, bool]:
    problems = [error(f"Unknown key; a resolution takes {', '.join(BODY_KEYS)}.", "body", key)
                for key in doc if key not in BODY_KEYS]
    output = doc.get("output")
    if output is not None and not isinstance(output, dict):
        problems.append(error("The output must be a JSON object.", "body", "output"))
    flags: dict[str, bool] = {}
    for key in ("retry", "abandon"):
        value = doc.get(key, False)
        if not isinstance(value, bool):
            problems.append(error("Must be true or false.", "body", key))
        flags[key] = value is True
    for key in ("note", "by"):
        if key in doc and not isinstance(doc[key], str):
            problems.append(error("Must be a string.", "body", key))
    if problems:
        raise ApiError(422, problems)
    chosen = [k for k, on in (("output", output is not None), ("retry", flags["retry"]),
                              ("abandon", flags["abandon"])) if on]
    if len(chosen) != 1:
        raise ApiError(422, [error(
            "Give exactly one of output, retry or abandon"
            + (f" (got {', '.join(chosen)})." if chosen else "."), "body")])
    return output, flags["retry"], flags["abandon"]


def _field_errors(model: type[BaseModel], output: dict[str, Any]) -> list[dict[str, Any]]:
    """The output's errors against its contract, each at its field (values not echoed)."""
    try:
        model.model_validate(output)
    except ValidationError as exc:
        return [{"loc": ["output", *err["loc"]], "msg": err["msg"], "type": err["type"]}
                for err in exc.errors(include_url=False, include_input=False)]
    return []


async def resolve_task(orch: Orchestrator, store: EventStore, book: WorkflowBook, *,
                       run_id: str, task_id: str, body: bytes, client: str) -> dict[str, Any]:
    """Resolve ``task_id`` of ``run_id`` as ``body`` says; the run's document after it.

    Raises :class:`ApiError` (nothing appended) when the resolution is refused.
    """
    doc = _parse(body)
    output, retry, abandon = _action(doc)
    by = doc.get("by") or f"console:{client}"
    note = doc.get("note", "")
    rid, envs = await read_run(store, run_id)
    state = rebuild(rid, envs)
    wf = book.for_state(state)
    task = state.tasks.get(task_id)
    try:
        await orch.resolve(rid, task_id, output=output, retry=retry, abandon=abandon,
                           by=by, note=note, workflow=wf)
    except ResolutionError as exc:
        fields: list[dict[str, Any]] = []
        # Located errors only where the contract is what refused it: an escalated task.
        if (output is not None and wf is not None and task is not None
                and task.status is TaskStatus.ESCALATED and task.agent in wf.agents):
            fields = _field_errors(wf.spec(task.agent).output, output)
        raise ApiError(422, fields or [error(one_line(str(exc)))]) from None
    except (RunBusyError, LeaseLostError, ConcurrencyError) as exc:
        raise ApiError(409, [error(one_line(str(exc)))]) from None
    except WorkflowDefinitionError as exc:
        raise ApiError(422, [error(
            one_line(str(exc)) + " Start the console with --workflow MODULE:WORKFLOW.")]) \
            from None
    except EventStoreError:
        raise  # the store failed, not the request: a server error
    except LedgerflowError as exc:
        raise ApiError(422, [error(one_line(str(exc)))]) from None
    return await run_document(store, rid, book)
