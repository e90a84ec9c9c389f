"""Declaring a workflow: its goal, agents, planner and escalation handler.

Example::

    wf = Workflow("travel", goal=TripGoal, budget=Budget(max_retries=10))

    @wf.agent(input=PricingInput, output=PricingOutput,
              retry=RetryPolicy(max_attempts=3), min_confidence=0.7)
    async def pricing(inp: PricingInput, ctx: AgentContext) -> PricingOutput: ...

    @wf.planner
    async def plan(goal: TripGoal, ctx: AgentContext) -> Plan: ...

Declaration errors (a ``min_confidence`` on an output without a
``confidence`` field, two agents with one name, a planner declared twice) are
raised here, at import time, not in the middle of a run.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from ledgerflow.contracts import AgentContract, confidence_field
from ledgerflow.machines.errors import WorkflowDefinitionError
from ledgerflow.machines.policies import Budget, RetryPolicy
from ledgerflow.machines.registry import note_constructed
from ledgerflow.machines.steps import call_unjournaled

if TYPE_CHECKING:
    from ledgerflow.machines.flow_slots import PoolSlots
    from ledgerflow.machines.steps import StepJournal

__all__ = [
    "AgentContext",
    "AgentFn",
    "AgentSpec",
    "EscalationRequest",
    "Resolution",
    "Workflow",
    "idempotency_key",
]

AgentFn = Callable[[Any, "AgentContext"], Awaitable[Any]]
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def _is_async(fn: object) -> bool:
    """Whether ``fn`` is an ``async def`` (a plain bool: ``inspect``'s TypeGuard would
    narrow the caller's ``F`` away and the decorators could not return it typed)."""
    return inspect.iscoroutinefunction(fn)


def idempotency_key(run_id: str, task_id: str) -> str:
    """The key a task's every attempt carries: stable across retries and resumes."""
    return hashlib.sha256(f"{run_id}/{task_id}".encode()).hexdigest()[:32]


@dataclass(slots=True)
class AgentContext:
    """What an agent (or the planner) knows about the call it is serving.

    ``idempotency_key`` is the same for every attempt of a task, across
    retries and resumes: pass it to the API that performs the side effect.

    Example::

        async def book(inp: BookingInput, ctx: AgentContext) -> BookingOutput:
            ref = await airline.book(inp.flight, idempotency_key=ctx.idempotency_key)
            ctx.record_usage(tokens=812, cost=0.004)
            return BookingOutput(reference=ref)
    """

    run_id: str
    task_id: str
    attempt: int
    idempotency_key: str
    tokens: int = 0
    cost: float = 0.0
    #: Set by the runtime for a dispatched attempt; ``None`` for a context built by hand.
    journal: StepJournal | None = field(default=None, repr=False)
    #: The pool's slots when a worker runs the attempt; ``None`` in one process.
    slots: PoolSlots | None = field(default=None, repr=False)
    #: Grows with every takeover of this attempt (another process drove the run
    #: on, or another worker claimed the attempt): pass it to an API that keeps
    #: the highest it has seen per key and refuses lower ones, so a process
    #: paused past its lease cannot act late (:mod:`ledgerflow.machines.lease_guard`).
    #: ``None`` for a context built by hand.
    fencing_token: int | None = None

    def pool_slot(self, key: str, limit: int) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold one of ``limit`` slots named ``key`` across the worker pool for a block.

        Outside a pool (a run driven in one process) it holds nothing: keep
        a process-wide limit of your own for that case.

        Example::

            async with ctx.pool_slot("search-api", 4):
                hits = await search(inp.query)   # at most 4 at once, pool-wide
        """
        if self.slots is None:
            return contextlib.nullcontext()
        return self.slots.hold(key, limit)

    async def step(
        self, name: str, fn: Callable[..., Any], /, *args: Any, side_effect: bool = False,
        secret: bool = False, **kwargs: Any,
    ) -> Any:
        """Call ``fn(*args, **kwargs)`` as a journaled step; its result as the log holds it.

        The request (``args``, ``kwargs``) and the result or error are
        recorded in the run's log with the usage ``fn`` reports by returning
        :class:`~ledgerflow.machines.steps.Metered`. An attempt resumed after
        a crash is served its completed steps in order instead of calling them
        again; ``side_effect=True`` makes the step durable before the call and
        escalates the task, never repeating it, if its outcome is unknown. A
        step is refused (:class:`~ledgerflow.machines.errors.BudgetExhaustedError`)
        once the run's cost budget is spent or its deadline passed. The result
        comes back as JSON data (a pydantic model as its dict): rebuild objects
        from it, as a resumed attempt would. ``secret=True`` keeps the result
        (a token the step fetched) in the store's vault: the log holds only a
        reference, and a resumed attempt is served the value. See
        :mod:`ledgerflow.machines.steps`.

        Example::

            fare = await ctx.step("fares_api", fetch_fare, inp.route)
            token = await ctx.step("oauth", fetch_token, inp.client_id, secret=True)
            await ctx.step("send_confirmation", send_mail, inp.email, side_effect=True)
        """
        if self.journal is None:
            return await call_unjournaled(fn, args, kwargs)
        return await self.journal.step(name, fn, args, kwargs, side_effect=side_effect,
                                       secret=secret)

    def time_left(self) -> float | None:
        """Seconds until the run's deadline (``None``: no deadline, or no run).

        Example::

            left = ctx.time_left()
            if left is not None and wait_s > left:
                raise TimeoutError("the wait would pass the run's deadline")
        """
        return None if self.journal is None else self.journal.time_left()

    def record_usage(self, *, tokens: int = 0, cost: float = 0.0) -> None:
        """Add the tokens and cost this attempt consumed (counted against the run's budget)."""
        if tokens < 0 or cost < 0:
            raise ValueError(f"Usage must not be negative (got tokens={tokens}, cost={cost}).")
        self.tokens += tokens
        self.cost += cost


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """One agent as declared with ``@wf.agent``."""

    name: str
    fn: AgentFn
    input: type[BaseModel]
    output: type[BaseModel]
    retry: RetryPolicy
    min_confidence: float | None
    side_effect: bool
    idempotent: bool
    timeout_s: float
    #: Attempts of this agent running at once across a whole worker pool (None: no limit).
    max_concurrent: int | None = None
    #: Attempts of this agent started per minute across a worker pool (None: no limit).
    per_minute: int | None = None

    @property
    def contract(self) -> AgentContract:
        return AgentContract(name=self.name, input=self.input, output=self.output)

    @property
    def safe_to_repeat(self) -> bool:
        """Whether running it again cannot do anything twice."""
        return not self.side_effect or self.idempotent


@dataclass(frozen=True, slots=True)
class EscalationRequest:
    """What an ``@wf.on_escalation`` handler is asked to settle."""

    run_id: str
    task_id: str
    agent: str
    kind: str
    reason: str
    candidate: Any
    input: dict[str, Any] | None
    #: The run's fencing token (as ``ctx.fencing_token``): hand it to a system
    #: that checks tokens before looking whether an "outcome unknown" effect
    #: happened, so a paused old owner can no longer land it after the look.
    fencing_token: int | None = None


@dataclass(frozen=True, slots=True)
class Resolution:
    """How an escalation is settled.

    Example::

        return Resolution.accept(esc.candidate, note="fare checked by the rule engine")
    """

    action: str
    output: Any = None
    note: str = ""

    @classmethod
    def accept(cls, output: Any, *, note: str = "") -> Resolution:
        """Use this output for the task (validated against its contract)."""
        return cls("output", output, note)

    @classmethod
    def retry(cls, *, note: str = "") -> Resolution:
        """Grant the task one more attempt (even past its retry limit or the run's budget)."""
        return cls("retry", None, note)

    @classmethod
    def abandon(cls, *, note: str = "") -> Resolution:
        """Give the task up; everything that needs it is skipped."""
        return cls("abandon", None, note)


EscalationHandler = Callable[[EscalationRequest], Awaitable[Resolution | None]]
PlannerFn = Callable[[Any, AgentContext], Awaitable[Any]]


@dataclass(eq=False)
class Workflow:
    """A named set of agents, a planner that decomposes a goal into tasks, and policies.

    ``max_concurrency`` bounds how many tasks are with agents (or backing off)
    at once; ``budget`` bounds the whole run. ``name`` is the workflow's
    stable reference: a run records it, and resuming the run finds the code
    by it (:func:`ledgerflow.machines.loader.find_workflow`), wherever its
    module lives by then; constructing the workflow registers it under that
    name in this process (:mod:`ledgerflow.machines.registry`).
    """

    name: str
    goal: type[BaseModel]
    budget: Budget = field(default_factory=Budget)
    max_concurrency: int = 8
    planner_timeout_s: float = 60.0
    agents: dict[str, AgentSpec] = field(default_factory=dict)
    planner_fn: PlannerFn | None = None
    escalation_handler: EscalationHandler | None = None
    module: str = ""

    def __post_init__(self) -> None:
        if not (isinstance(self.goal, type) and issubclass(self.goal, BaseModel)):
            raise WorkflowDefinitionError(
                f"Workflow '{self.name}' needs goal= a pydantic model class (got {self.goal!r})."
            )
        if self.max_concurrency < 1:
            raise WorkflowDefinitionError(
                f"Workflow '{self.name}' needs max_concurrency >= 1 (got {self.max_concurrency})."
            )
        if not self.module:
            frame = sys._getframe(2)  # the caller of the generated __init__
            self.module = str(frame.f_globals.get("__name__", ""))
        # Found again by name when a run of it is resumed or verified.
        note_constructed(self)

    # -- declaration ------------------------------------------------------

    def agent(
        self,
        *,
        input: type[BaseModel],  # shadows the builtin: it is the public keyword users write
        output: type[BaseModel],
        name: str | None = None,
        retry: RetryPolicy | None = None,
        min_confidence: float | None = None,
        side_effect: bool = False,
        idempotent: bool = False,
        timeout_s: float = 60.0,
        max_concurrent: int | None = None,
        per_minute: int | None = None,
    ) -> Callable[[F], F]:
        """Register an async agent ``fn(input_model, ctx) -> output``.

        ``side_effect=True`` marks an agent that changes the world (books,
        sends, writes): after a failure, timeout or crash it is run again only
        if ``idempotent=True``, and then with the same ``ctx.idempotency_key``;
        otherwise the task is escalated.

        ``max_concurrent`` and ``per_minute`` are flow control across a worker
        pool (:class:`~ledgerflow.machines.worker.Worker`): at most that many
        attempts of this agent run at once, or start in any 60 seconds, over
        every worker of the store; attempts beyond it wait offered, they do
        not fail. A run driven in one process by ``Orchestrator.start`` holds
        ``max_concurrent`` within that process.

        Example::

            @wf.agent(input=Q, output=A, max_concurrent=4, per_minute=120)
            async def search(inp: Q, ctx: AgentContext) -> A: ...
        """

        def register(fn: F) -> F:
            agent_name = name or fn.__name__
            if not _is_async(fn):
                raise WorkflowDefinitionError(
                    f"Agent '{agent_name}' must be an async function (async def)."
                )
            if agent_name in self.agents:
                raise WorkflowDefinitionError(
                    f"Workflow '{self.name}' already has an agent named '{agent_name}'; "
                    "pass name= to tell them apart."
                )
            for label, model in (("input", input), ("output", output)):
                if not (isinstance(model, type) and issubclass(model, BaseModel)):
                    raise WorkflowDefinitionError(
                        f"Agent '{agent_name}' needs {label}= a pydantic model class "
                        f"(got {model!r})."
                    )
            if min_confidence is not None:
                if not 0.0 <= min_confidence <= 1.0:
                    raise WorkflowDefinitionError(
                        f"Agent '{agent_name}' has min_confidence={min_confidence}; "
                        "it must lie between 0 and 1."
                    )
                if not confidence_field(output):
                    raise WorkflowDefinitionError(
                        f"Agent '{agent_name}' sets min_confidence, but {output.__name__} "
                        "declares no numeric 'confidence' field to read it from."
                    )
            if timeout_s <= 0:
                raise WorkflowDefinitionError(
                    f"Agent '{agent_name}' needs timeout_s > 0 (got {timeout_s})."
                )
            for limit_name, limit in (("max_concurrent", max_concurrent),
                                      ("per_minute", per_minute)):
                if limit is not None and (type(limit) is not int or limit < 1):
                    raise WorkflowDefinitionError(
                        f"Agent '{agent_name}' needs {limit_name} to be a whole number >= 1 "
                        f"or None (got {limit!r}).")
            self.agents[agent_name] = AgentSpec(
                name=agent_name, fn=fn, input=input, output=output,
                retry=retry or RetryPolicy(), min_confidence=min_confidence,
                side_effect=side_effect, idempotent=idempotent, timeout_s=timeout_s,
                max_concurrent=max_concurrent, per_minute=per_minute,
            )
            return fn

        return register

    def planner(self, fn: F) -> F:
        """Register the async planner ``fn(goal_model, ctx) -> Plan``."""
        if self.planner_fn is not None:
            raise WorkflowDefinitionError(f"Workflow '{self.name}' already has a planner.")
        if not _is_async(fn):
            raise WorkflowDefinitionError("The planner must be an async function (async def).")
        self.planner_fn = fn
        return fn

    def on_escalation(self, fn: F) -> F:
        """Register an async handler ``fn(request) -> Resolution | None``.

        It is asked to settle every escalation as it happens; returning
        ``None`` leaves the escalation open for ``ledgerflow resolve``.
        """
        if self.escalation_handler is not None:
            raise WorkflowDefinitionError(
                f"Workflow '{self.name}' already has an escalation handler."
            )
        if not _is_async(fn):
            raise WorkflowDefinitionError(
                "The escalation handler must be an async function (async def)."
            )
        self.escalation_handler = fn
        return fn

    # -- queries ----------------------------------------------------------

    @property
    def contracts(self) -> dict[str, AgentContract]:
        return {name: spec.contract for name, spec in self.agents.items()}

    def spec(self, agent: str) -> AgentSpec:
        try:
            return self.agents[agent]
        except KeyError:
            raise WorkflowDefinitionError(
                f"Workflow '{self.name}' has no agent '{agent}' "
                f"(it has: {', '.join(sorted(self.agents)) or 'none'})."
            ) from None

    @property
    def ref(self) -> str:
        """``module:attribute`` where this workflow can be imported from, or ``""``."""
        module = sys.modules.get(self.module)
        if module is None:
            return ""
        name = self.module
        if name == "__main__":
            # A script's workflow is importable only under its real module name.
            spec = getattr(module, "__spec__", None)
            name = spec.name if spec is not None and spec.name != "__main__" else ""
        if not name:
            return ""
        for attr, value in vars(module).items():
            if value is self:
                return f"{name}:{attr}"
        return ""
