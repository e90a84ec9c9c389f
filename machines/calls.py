"""The calls to the outside world: agents, the planner, escalation handlers, timers.

Each call returns the fact its outcome is (an output, an error, a plan, a
resolution), never raises for what the callee did: an agent that raises, times
out, or returns something the log cannot hold becomes a recorded
:class:`AgentFailed`; a planner that does becomes a :class:`PlanProposed`
with an ``error``, which the decider rejects. Only a cancel from outside (the
driver stopping) propagates.

Example::

    fact = await call_agent(wf, state, dispatched, max_event_bytes=store.max_event_bytes)
"""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec
from pydantic import BaseModel, ValidationError

from ledgerflow.contracts import validate_output
from ledgerflow.machines import events as ev
from ledgerflow.machines.errors import PermanentError, SecretErasedError, UnloggableValueError
from ledgerflow.machines.flow_slots import PoolSlots
from ledgerflow.machines.origin import agent_failed
from ledgerflow.machines.secret_keeping import SecretKeeper, as_data, must_keep_secrets
from ledgerflow.machines.stable_names import (
    INPUT_CONTRACT_ERROR,
    OUTPUT_TOO_LARGE,
    UNLOGGABLE_OUTPUT,
    exception_names,
)
from ledgerflow.machines.state import RunState
from ledgerflow.machines.step_rules import PLANNER
from ledgerflow.machines.steps import StepJournal
from ledgerflow.machines.values import (
    ENVELOPE_ROOM,
    as_logged,
    describe_exception,
    encode_loggable,
    loggable_text,
)
from ledgerflow.machines.workflow import (
    AgentContext,
    EscalationRequest,
    Resolution,
    Workflow,
    idempotency_key,
)

__all__ = ["ENVELOPE_ROOM", "ask_handler", "call_agent", "call_planner",
           "cancelled_from_outside", "timer"]

log = logging.getLogger("ledgerflow")

_PERMANENT_NAMES = exception_names(PermanentError)
#: An output the log cannot hold is retried like an invalid one (a model may do
#: better next time), hence the ValueError it is a kind of.
_UNLOGGABLE = [UNLOGGABLE_OUTPUT, *exception_names(ValueError)]
_TOO_LARGE = [OUTPUT_TOO_LARGE]


def cancelled_from_outside() -> bool:
    """Whether the running task was cancelled (by the driver or its caller)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def call_agent(
    wf: Workflow, state: RunState, dispatched: ev.TaskDispatched, *, max_event_bytes: int,
    journal: StepJournal | None = None, slots: PoolSlots | None = None,
    fencing_token: int | None = None, secrets: SecretKeeper | None = None,
) -> ev.Event:
    """Call the task's agent on exactly the dispatched input; the outcome as a fact.

    With ``secrets`` the input's secret references are revealed for the agent,
    its output's secret fields are kept in the vault (the fact holds their
    references) and its error messages lose any secret they quote.
    """
    task_id, attempt = dispatched.task_id, dispatched.attempt
    spec = wf.spec(state.tasks[task_id].agent)
    ctx = AgentContext(
        run_id=state.run_id, task_id=task_id, attempt=attempt,
        idempotency_key=dispatched.idempotency_key, journal=journal, slots=slots,
        fencing_token=fencing_token,
    )

    def failed(names: list[str], message: str, *, error_type: str | None = None,
               timed_out: bool = False) -> ev.AgentFailed:
        # tokens and cost as the agent reported them up to its failure.
        if secrets is not None:
            message = secrets.scrub(message, dispatched.input)
        return agent_failed(
            dispatched, names, loggable_text(message), error_type=error_type,
            timed_out=timed_out, tokens=ctx.tokens, cost=ctx.cost)

    try:
        given = dispatched.input if secrets is None else secrets.reveal(
            dispatched.input, run_id=state.run_id, what=f"the input of task '{task_id}'")
        inp = spec.input.model_validate(given)
    except SecretErasedError as exc:
        # Permanent: every retry would meet the same erased vault.
        return failed(exception_names(SecretErasedError), str(exc))
    except ValidationError as exc:
        # Recorded as a PermanentError: a retry would dispatch the same input.
        return failed(_PERMANENT_NAMES,
                      f"the dispatched input does not satisfy {spec.input.__name__}: {exc}",
                      error_type=INPUT_CONTRACT_ERROR)
    timeout = asyncio.timeout(dispatched.timeout_s)
    started = time.perf_counter()
    try:
        async with timeout:
            result = await spec.fn(inp, ctx)
    except TimeoutError as exc:
        if timeout.expired():
            return failed(exception_names(TimeoutError), f"{dispatched.timeout_s:g}s",
                          timed_out=True)
        names = exception_names(type(exc))
        return failed(names, describe_exception(exc))
    except asyncio.CancelledError as exc:
        if cancelled_from_outside():
            raise
        # The agent (or a library inside it) raised CancelledError itself.
        names = exception_names(type(exc))
        return failed(names,
                      describe_exception(exc) or "the agent raised CancelledError")
    except Exception as exc:  # every agent error becomes a recorded fact
        names = exception_names(type(exc))
        return failed(names, describe_exception(exc) or type(exc).__name__)
    # encode_loggable turns every ValueError, TypeError and RecursionError of
    # encoding (a model's model_dump included) into UnloggableValueError.
    try:
        if secrets is not None and must_keep_secrets(spec.output):
            result = await secrets.keep(state.run_id, result, spec.output)
        encoded = encode_loggable(result, what=f"the output of task '{task_id}'")
    except UnloggableValueError as exc:
        return failed(_UNLOGGABLE, f"the output cannot be recorded: {exc.problem}")
    size = len(encoded)
    limit = max_event_bytes - ENVELOPE_ROOM
    if size > limit:
        return failed(_TOO_LARGE,
                      f"the output is {size:,} bytes, over the {limit:,}-byte limit of "
                      "one logged event")
    # Decide on exactly what the log will hold.
    return ev.OutputReceived(
        task_id=task_id, attempt=attempt, output=msgspec.json.decode(encoded),
        tokens=ctx.tokens, cost=ctx.cost,
        duration_ms=round((time.perf_counter() - started) * 1000, 3))


async def call_planner(wf: Workflow, state: RunState, *, max_event_bytes: int,
                       journal: StepJournal | None = None,
                       secrets: SecretKeeper | None = None) -> ev.Event:
    """Ask the planner for a plan; the answer (or why there is none) as a fact."""
    planner = wf.planner_fn
    assert planner is not None
    ctx = AgentContext(
        run_id=state.run_id, task_id=PLANNER, attempt=1,
        idempotency_key=idempotency_key(state.run_id, PLANNER), journal=journal,
    )
    try:
        goal = wf.goal.model_validate(state.goal if secrets is None else secrets.reveal(
            state.goal, run_id=state.run_id, what="the goal"))
        async with asyncio.timeout(wf.planner_timeout_s):
            plan = await planner(goal, ctx)
    except TimeoutError:
        return ev.PlanProposed(error=f"timed out after {wf.planner_timeout_s:g}s")
    except asyncio.CancelledError as exc:
        if cancelled_from_outside():
            raise
        return ev.PlanProposed(error=loggable_text(
            f"CancelledError: {describe_exception(exc) or 'raised by the planner'}"))
    except Exception as exc:  # a planner error is a recorded fact, not a crash
        return ev.PlanProposed(
            error=loggable_text(f"{type(exc).__name__}: {describe_exception(exc)}"))
    try:
        encoded = encode_loggable(plan, what="the plan")
    except UnloggableValueError as exc:
        return ev.PlanProposed(error=f"the plan cannot be recorded: {exc.problem}")
    # PlanAccepted carries the same tasks again, so a plan that fits here fits there.
    limit = max_event_bytes - ENVELOPE_ROOM
    if len(encoded) > limit:
        return ev.PlanProposed(error=(
            f"the plan is {len(encoded):,} bytes as JSON, over the {limit:,}-byte limit of one "
            "logged event; plan fewer, smaller tasks (or open the store with a larger "
            "max_event_bytes)"))
    return ev.PlanProposed(plan=msgspec.json.decode(encoded))


async def timer(task_id: str, delay_s: float) -> ev.Event:
    """A backoff that has elapsed."""
    await asyncio.sleep(delay_s)
    return ev.TimerFired(task_id=task_id)


async def ask_handler(wf: Workflow, state: RunState, task_id: str, *,
                      secrets: SecretKeeper | None = None,
                      fencing_token: int | None = None) -> ev.Event | None:
    """Ask the workflow's escalation handler; its resolution as a fact, or None to leave it open.

    With ``secrets`` the handler sees the real values of the candidate's and
    the input's secret fields, and its output's secret fields are kept in the
    vault like any output's.
    """
    handler = wf.escalation_handler
    assert handler is not None
    task = state.tasks[task_id]
    escalation = state.escalations.get(task_id)
    if escalation is None:
        return None
    candidate, given = escalation.candidate, task.input
    if secrets is not None:
        try:
            candidate = secrets.reveal(candidate, run_id=state.run_id,
                                       what=f"the candidate of task '{task_id}'")
            given = secrets.reveal(given, run_id=state.run_id,
                                   what=f"the input of task '{task_id}'")
        except SecretErasedError as exc:
            log.warning("%s; the escalation of task %s is left open.", exc, task_id)
            return None
    request = EscalationRequest(
        run_id=state.run_id, task_id=task_id, agent=task.agent, kind=escalation.kind,
        reason=escalation.reason, candidate=candidate, input=given,
        fencing_token=fencing_token,
    )
    try:
        resolution = await handler(request)
    except Exception:
        log.exception("The escalation handler failed on task %s; leaving it open.", task_id)
        return None
    if resolution is None:
        return None
    if not isinstance(resolution, Resolution):
        log.warning("The escalation handler returned %s, not a Resolution or None, for "
                    "task %s; leaving the escalation open.", type(resolution).__name__, task_id)
        return None
    output = resolution.output
    contract = wf.spec(task.agent).output
    if output is not None:
        try:
            output = as_logged(as_data(output) if isinstance(output, BaseModel) else output,
                               what=f"the handler's output for task '{task_id}'")
            if secrets is not None:
                output = await secrets.keep(state.run_id, output, contract)
        except (UnloggableValueError, ValueError, RecursionError, TypeError) as exc:
            log.warning("The escalation handler's output for task %s cannot be logged (%s); "
                        "leaving the escalation open.", task_id, describe_exception(exc))
            return None
    if resolution.action == "output":
        verdict = validate_output(contract, output, task_id=task_id,
                                  secrets=None if secrets is None else secrets.known)
        if not verdict.ok:
            log.warning("The escalation handler's output for task %s is invalid (%s); "
                        "leaving the escalation open.", task_id, "; ".join(verdict.errors))
            return None
    name = getattr(handler, "__name__", "handler")
    return ev.EscalationResolved(
        task_id=task_id, action=resolution.action, by=f"handler:{name}", output=output,
        note=loggable_text(resolution.note),
    )
