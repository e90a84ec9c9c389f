"""Journaled steps inside an agent: ``await ctx.step(name, fn, *args, **kwargs)``.

A step is one call to the outside world made by an agent (a model request, a
tool call). Its request and its result (or error) are recorded in the run's
log, in order, with their usage, so:

- a step's result is durable before the agent sees it, so an attempt
  interrupted by a crash, a kill or a lost lease, and dispatched again by
  resume, is served the steps it already completed, in order, instead of
  calling them again, and goes on live from the first step with no recorded
  result (a call cut off before its result was durable recorded nothing, and
  is made again);
- a step with ``side_effect=True`` is durable before it is called; if its
  outcome is unknown after a crash the task is escalated, never repeated,
  and a retry after a failure that asks for the same side effect (same name,
  same request) is served the recorded one instead of acting twice;
- a step is refused once the run's cost budget is spent or its deadline
  passed (:class:`~ledgerflow.machines.errors.BudgetExhaustedError`), so one
  run-wide budget bounds nested and cascading calls;
- an offline run is answered from a recording
  (:class:`~ledgerflow.machines.recording.Recording`).

Example::

    async def price(inp: PricingInput, ctx: AgentContext) -> PricingOutput:
        quote = await ctx.step("fares_api", fetch_fare, inp.route)
        await ctx.step("notify", send_mail, inp.email, quote, side_effect=True)
        return PricingOutput.model_validate(quote)
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from ledgerflow.machines.errors import (
    BudgetExhaustedError,
    RecordedStepError,
    RecordingMissError,
    StepMismatchError,
    StepOutcomeUnknownError,
    UnloggableValueError,
)
from ledgerflow.machines.stable_names import exception_names
from ledgerflow.machines.state import RunState
from ledgerflow.machines.step_events import StepRecorded, StepStarted
from ledgerflow.machines.step_rules import (
    PLANNER,
    deadline_left_s,
    diverging_here_could_repeat_a_side_effect,
    request_hash,
    step_key,
    step_refused_for_budget,
)
from ledgerflow.machines.values import (
    ENVELOPE_ROOM,
    describe_exception,
    encode_loggable,
    loggable_text,
)

if TYPE_CHECKING:
    from ledgerflow.machines.recording import Recording

__all__ = ["Metered", "StepJournal", "call_unjournaled"]


@dataclass(frozen=True, slots=True)
class Metered:
    """What a step's function returns to report its usage with its value.

    ``detail`` is shown by the audit view: ``{"kind": "llm", "model": ...,
    "input_tokens": ..., "output_tokens": ...}`` for a model call,
    ``{"kind": "tool", "tool": ...}`` for a tool call.

    Example::

        async def ask(prompt: str) -> Metered:
            response = await client.complete(prompt)
            return Metered(response.text, tokens=response.tokens, cost=0.0012,
                           detail={"kind": "llm", "model": "gpt-4.1-mini"})
    """

    value: Any
    tokens: int = 0
    cost: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tokens < 0 or self.cost < 0:
            raise ValueError(f"Usage must not be negative (got tokens={self.tokens}, "
                             f"cost={self.cost}).")


class Submit(Protocol):
    """Hands a step fact to the driver; returns once it is decided (StepStarted: durable)."""

    def __call__(self, fact: StepStarted | StepRecorded) -> Awaitable[None]: ...


async def _called(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


async def call_unjournaled(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """A step outside any run (an agent called by hand in a unit test): just the call."""
    result = await _called(fn, args, kwargs)
    return result.value if isinstance(result, Metered) else result


def _serve(step: StepRecorded) -> Any:
    if step.error_type:
        raise RecordedStepError(step.name, step.error_type, step.message)
    return step.result


class StepSecrets(Protocol):
    """How a journal keeps a ``secret=True`` step's result out of the log, and gets it back."""

    async def keep(self, value: Any) -> Any:
        """``value`` kept in the vault; the reference to log in its place."""
        ...

    def reveal(self, value: Any) -> Any:
        """``value`` with every reference replaced by the kept value."""
        ...


class StepJournal:
    """The steps of one dispatched attempt: served from the log, or called and recorded.

    Built by the driver for each dispatch (``recorded`` is what the log
    already holds for this attempt); :meth:`AgentContext.step` is its
    public face.
    """

    def __init__(
        self,
        *,
        state: RunState,
        task_id: str,
        attempt: int,
        submit: Submit,
        clock: Callable[[], datetime],
        max_event_bytes: int,
        recording: Recording | None = None,
        before_side_effect: Callable[[], Awaitable[None]] | None = None,
        scrub: Callable[[Any], Any] | None = None,
        secrets: StepSecrets | None = None,
    ) -> None:
        self.state = state
        #: Keeps a ``secret=True`` step's result in the vault and reveals it when served.
        self.secrets = secrets
        #: Blanks the attempt's secrets out of what a step logs (an agent that put
        #: its key into a prompt): see :meth:`SecretKeeper.scrubber`.
        self.scrub = scrub
        #: Called after a side effect's start is durable, before it is called: the
        #: lease (or pool claim) must still be certainly held.
        self.before_side_effect = before_side_effect
        self.task_id = task_id
        self.attempt = attempt
        planner = task_id == PLANNER
        steps = state.planner_steps if planner else state.tasks[task_id].steps
        #: Side effects done by earlier attempts of the task (the planner has one call).
        self.done_side_effects: dict[str, StepRecorded] = (
            {} if planner else state.tasks[task_id].done_side_effects)
        self.recorded: dict[int, StepRecorded | StepStarted] = dict(steps)
        #: Set where the attempt went live past a differing log: the next step
        #: recorded says the rest of the old record no longer applies.
        self.discard_from: int | None = None
        self.submit = submit
        self.clock = clock
        self.max_event_bytes = max_event_bytes
        self.recording = recording
        self.next_index = 0

    def time_left(self) -> float | None:
        """Seconds until the run's deadline, or ``None`` if it has none."""
        return deadline_left_s(self.state, self.clock())

    async def step(
        self, name: str, fn: Callable[..., Any], args: tuple[Any, ...],
        kwargs: dict[str, Any], *, side_effect: bool, secret: bool = False,
    ) -> Any:
        """One step: served if the log (or the recording) has it, else called and recorded.

        With ``secret`` the result is kept in the store's vault and the log
        holds its reference; a served step is handed the value again.
        """
        if secret and self.secrets is None:
            raise TypeError(f"step '{name}' asks to keep its result secret, but this attempt "
                            "has no secret vault (it runs outside a store)")
        what = f"the request of step '{name}'"
        request_json = encode_loggable({"args": list(args), "kwargs": kwargs}, what=what)
        digest = request_hash(name, request_json)
        index = self.next_index
        self.next_index += 1
        served = self._recorded_at(index, name, digest)
        if served is not None:
            self.next_index += served.nested  # its nested steps were served with it
            return self._revealed(_serve(served))
        request = msgspec.json.decode(request_json)
        done = self.done_side_effects.get(step_key(name, digest)) if side_effect else None
        if done is not None:
            # A retry asking for a side effect an earlier attempt performed.
            await self.record(msgspec.structs.replace(
                done, attempt=self.attempt, index=index, reason="", tokens=0, cost=0.0,
                nested=0, request=request,
                detail={**done.detail, "served_from_attempt": done.attempt}))
            return self._revealed(done.result)
        if self.recording is not None:
            try:
                answer = self.recording.answer(name, digest, request)
            except RecordingMissError as miss:
                # In the new run's log too: `show` lists the request that missed.
                await self.record(_failed(StepRecorded(
                    task_id=self.task_id, attempt=self.attempt, index=index, name=name,
                    request=request, request_hash=digest, side_effect=side_effect,
                    detail={"served_from": self.recording.source}), miss, time.perf_counter()))
                raise
            await self.record(msgspec.structs.replace(
                answer, task_id=self.task_id, attempt=self.attempt, index=index, reason="",
                request=request, side_effect=side_effect, nested=0,
                detail={**answer.detail, "served_from": self.recording.source}))
            return self._revealed(_serve(answer))
        refusal = step_refused_for_budget(self.state, self.clock())
        if refusal is not None:
            raise BudgetExhaustedError(f"{refusal} Step '{name}' of task '{self.task_id}' was "
                                       "not called.")
        if side_effect:
            await self.record(StepStarted(
                task_id=self.task_id, attempt=self.attempt, index=index, name=name,
                request=request, request_hash=digest))
            if self.before_side_effect is not None:
                # Its start is in the log either way: if the lease is gone now, the
                # step's outcome stays unknown (it escalates), and it never acts.
                await self.before_side_effect()
        return await self._call(name, fn, args, kwargs, index=index, digest=digest,
                                request=None if side_effect else request,
                                side_effect=side_effect, secret=secret)

    def _revealed(self, result: Any) -> Any:
        """A result from the log as the agent gets it: a secret step's value, not its reference."""
        return result if self.secrets is None else self.secrets.reveal(result)

    def record(self, fact: StepStarted | StepRecorded) -> Awaitable[None]:
        """Hand a step fact to the driver (marked if the old record stops applying here)."""
        if self.discard_from is not None and fact.index >= self.discard_from:
            fact = msgspec.structs.replace(fact, discards_later=True)
            self.discard_from = None
        if self.scrub is not None:
            fact = _scrubbed(fact, self.scrub)
        return self.submit(fact)

    def _recorded_at(self, index: int, name: str, digest: str) -> StepRecorded | None:
        """The recorded step this one is, if the log holds it at ``index``."""
        recorded = self.recorded
        step = recorded.get(index)
        if step is None:
            return None
        if step.name == name and step.request_hash == digest:
            if isinstance(step, StepRecorded):
                return step
            # Only the planner gets here: a task's open side effect escalates on resume.
            raise StepOutcomeUnknownError(
                f"Step {index} '{name}' of '{self.task_id}' has side effects, started before "
                "the process stopped and recorded no outcome; it is not run again (a person "
                "must check whether it acted).")
        if diverging_here_could_repeat_a_side_effect(recorded, index):
            raise StepMismatchError(
                f"Attempt {self.attempt} of task '{self.task_id}' asked for step {index} "
                f"'{name}', but the log records '{step.name}' "
                f"({'another request' if step.name == name else 'another step'}) there, and a "
                "side-effecting step was recorded at or after it; going on live could act "
                "twice, so the task is escalated.")
        for later in [at for at in recorded if at >= index]:
            del recorded[later]  # the rest of the record no longer applies
        self.discard_from = index
        return None

    async def _call(
        self, name: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
        *, index: int, digest: str, request: Any, side_effect: bool, secret: bool = False,
    ) -> Any:
        base = StepRecorded(task_id=self.task_id, attempt=self.attempt, index=index, name=name,
                            request=request, request_hash=digest, side_effect=side_effect)
        started = time.perf_counter()
        try:
            result = await _called(fn, args, kwargs)
        except Exception as exc:  # recorded, then raised to the agent unchanged
            await self.record(_failed(base, exc, started, nested=self.next_index - index - 1))
            raise
        base = msgspec.structs.replace(base, nested=self.next_index - index - 1)
        metered = result if isinstance(result, Metered) else Metered(result)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        try:
            encoded = encode_loggable(metered.value, what=f"the result of step '{name}'")
            detail = msgspec.json.decode(encode_loggable(
                metered.detail, what=f"the detail of step '{name}'"))
        except UnloggableValueError as exc:
            await self.record(_failed(base, exc, started))
            raise
        limit = self.max_event_bytes - ENVELOPE_ROOM - len(msgspec.json.encode(request))
        if len(encoded) > limit:
            too_large = UnloggableValueError(
                f"the result of step '{name}'", f"it is {len(encoded):,} bytes, over the "
                f"{limit:,} bytes one logged event has room for",
                "return less from the step (or open the store with a larger max_event_bytes)")
            await self.record(_failed(base, too_large, started))
            raise too_large
        value = msgspec.json.decode(encoded)
        logged = value if not secret or self.secrets is None else await self.secrets.keep(value)
        await self.record(msgspec.structs.replace(
            base, result=logged, tokens=metered.tokens, cost=metered.cost,
            duration_ms=elapsed_ms, detail=detail))
        return value


def _scrubbed(fact: StepStarted | StepRecorded, scrub: Callable[[Any], Any]
              ) -> StepStarted | StepRecorded:
    # The request hash stays the one of the real request: a resumed attempt
    # asking again is matched, and served what the log holds.
    if isinstance(fact, StepStarted):
        return msgspec.structs.replace(fact, request=scrub(fact.request))
    return msgspec.structs.replace(
        fact, request=scrub(fact.request), result=scrub(fact.result),
        detail=scrub(fact.detail), message=scrub(fact.message))


def _failed(base: StepRecorded, exc: BaseException, started: float, *,
            nested: int | None = None) -> StepRecorded:
    names = exception_names(type(exc))
    return msgspec.structs.replace(
        base, error_type=names[0], error_types=names,
        nested=base.nested if nested is None else nested,
        message=loggable_text(describe_exception(exc) or type(exc).__name__),
        duration_ms=round((time.perf_counter() - started) * 1000, 3))
