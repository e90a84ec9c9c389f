"""pydantic-ai agents as ledgerflow agents: every model request and tool call a journaled step.

:func:`run_agent` runs a :class:`pydantic_ai.Agent` inside a ledgerflow agent.
Each model request and each tool call of that run becomes one
``ctx.step`` (see :mod:`ledgerflow.machines.steps`), so

- an attempt resumed after a crash is served the requests and tool calls it
  already made, in order, instead of making them again;
- each model request's tokens (and cost, from ``prices``) are charged to the
  run's budget as the step is recorded, and a request is refused
  (:class:`~ledgerflow.machines.errors.BudgetExhaustedError`) once the budget
  is spent;
- the agent's output is what the ledgerflow agent returns, so ledgerflow
  validates it against the agent's declared output model like any other.

It is built on pydantic-ai's durable-execution backend API
(:mod:`pydantic_ai.durable_exec`): :class:`LedgerflowDurability` is a
``BaseDurabilityCapability`` whose backend runs each durable unit as a
ledgerflow step, named by pydantic-ai's ``JournalOperationNamer`` (names are
persisted: ``<agent>__model.request``,
``<agent>__function_toolset__<toolset id>.call_tool:<tool>``).

Example::

    from pydantic_ai import Agent
    from ledgerflow.llm import run_agent

    support = Agent("openai:gpt-4.1-mini", name="support", output_type=Answer)

    @support.tool_plain
    def order_status(order_id: str) -> str: ...

    @wf.agent(input=Question, output=Answer)
    async def answer(inp: Question, ctx: AgentContext) -> Answer:
        return await run_agent(ctx, support, inp.text,
                               prices={"gpt-4.1-mini": (0.4, 1.6)})

A tool that acts on the world is marked in its metadata, so its step is
durable before it runs and an unknown outcome escalates instead of repeating::

    @support.tool_plain(metadata={"ledgerflow": {"side_effect": True}})
    def refund(order_id: str) -> str: ...
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic_ai.agent import AbstractAgent
from pydantic_ai.durable_exec import (
    JSON_CODEC,
    BaseDurabilityCapability,
    CacheIdentity,
    DurabilityEngineSpec,
    DurableOperation,
    DurableOperationBackend,
    DurableOperationId,
    JournalCallableOperationBackend,
    ModelCompactMessagesId,
    ModelRequestId,
    RoleBasedOperationConfig,
    ToolsetCallToolId,
    conversation_id_from_run_id,
)
from pydantic_ai.durable_exec import BoundDurableOperation as _Bound
from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter, ModelResponse
from pydantic_ai.models import Model
from pydantic_ai.tools import AgentDepsT, RunContext
from pydantic_ai.toolsets import ToolsetTool
from pydantic_core import to_jsonable_python

from ledgerflow.llm.prices import Price, PriceSpec, price_of, price_table
from ledgerflow.machines import AgentContext, Metered, PermanentError

__all__ = ["LedgerflowDurability", "run_agent"]

OutputT = TypeVar("OutputT")
ParamsT = TypeVar("ParamsT")
WireT = TypeVar("WireT")
ResultT = TypeVar("ResultT")

#: The tool-metadata key of per-tool step options: ``{"ledgerflow": {"side_effect": True}}``.
TOOL_CONFIG_KEY = "ledgerflow"

#: Per-run message fields pydantic-ai fills from the clock or fresh ids: left out of a step's
#: request so a resumed attempt, which re-runs the agent, asks for the same step.
_PER_RUN_FIELDS = ("timestamp", "run_id", "conversation_id")


@dataclass(frozen=True, slots=True)
class _Journal:
    """The ledgerflow call one :func:`run_agent` serves, and the agent run's stable id."""

    ctx: AgentContext
    prices: Mapping[str, Price]
    run_id: str


#: Set by run_agent for the agent run; None inside a step's body, so an agent run
#: inside a tool belongs to that tool's step instead of journaling steps of its own.
_ACTIVE: ContextVar[_Journal | None] = ContextVar("ledgerflow_pydantic_ai_journal", default=None)
#: True inside a step's body: a run_agent there (a tool delegating to another agent with
#: the same ctx) is part of the step, as a nested step would be served out of order.
_IN_STEP: ContextVar[bool] = ContextVar("ledgerflow_pydantic_ai_in_step", default=False)
#: The agent runs one ledgerflow agent call made so far, by its idempotency key: an agent
#: call runs in its own asyncio task, so this counts the runs of that call, in order.
_RUNS_SO_FAR: ContextVar[tuple[str, int]] = ContextVar("ledgerflow_pydantic_ai_runs",
                                                        default=("", 0))


def _next_run_id(ctx: AgentContext) -> str:
    """A pydantic-ai run id that a resumed or retried attempt gets again (the n-th run).

    A tool reading ``RunContext.run_id`` (say, as an idempotency key) sees the
    same id when the attempt runs again, as Temporal's and DBOS's runs do.
    """
    key, count = _RUNS_SO_FAR.get()
    count = count + 1 if key == ctx.idempotency_key else 1
    _RUNS_SO_FAR.set((ctx.idempotency_key, count))
    return f"ledgerflow:{ctx.idempotency_key}:{count}"


async def run_agent(
    ctx: AgentContext,
    agent: AbstractAgent[AgentDepsT, OutputT],
    user_prompt: Any = None,
    *,
    deps: Any = None,
    prices: Mapping[str, PriceSpec] | None = None,
    **run_kwargs: Any,
) -> OutputT:
    """Run ``agent`` with every model request and tool call a step of ``ctx``; its output.

    ``prices`` maps model names to USD per million input and output tokens
    (a tuple or a :class:`~ledgerflow.llm.prices.Price`); without it requests
    cost 0 (their tokens are still charged); with it, a request to a model it
    does not price raises :class:`~ledgerflow.llm.prices.PriceMissingError`
    before the request is made. ``run_kwargs``
    go to ``agent.run`` (``message_history``, ``model_settings``,
    ``usage_limits``, ...). The agent needs a ``name`` (it names the steps).
    If it was not built with :class:`LedgerflowDurability`, one is added for
    this run. Run one agent at a time per ledgerflow agent call: steps are
    served back in the order they were recorded. Called inside a tool of
    another such agent, the inner run is part of that tool's step.

    Example::

        @wf.agent(input=Question, output=Answer)
        async def answer(inp: Question, ctx: AgentContext) -> Answer:
            return await run_agent(ctx, support, inp.text, deps=Shop(inp.shop_id))
    """
    capabilities = list(run_kwargs.pop("capabilities", None) or ())
    if LedgerflowDurability.from_agent(agent) is None and not any(
            isinstance(c, LedgerflowDurability) for c in capabilities):
        if not agent.name:
            # pydantic-ai would infer one from a variable name at run time: a rename in the
            # code would then rename every persisted step.
            raise PermanentError(
                "run_agent needs a named pydantic-ai agent: its name begins the name of every "
                "step it journals. Build it with Agent(..., name='support').")
        capabilities.append(LedgerflowDurability())
    journal = _Journal(ctx, price_table(prices), _next_run_id(ctx))
    token = _ACTIVE.set(None if _IN_STEP.get() else journal)
    try:
        result = await agent.run(user_prompt, deps=deps, capabilities=capabilities, **run_kwargs)
    finally:
        _ACTIVE.reset(token)
    output: OutputT = result.output
    return output


@dataclass(init=False, kw_only=True)
class LedgerflowDurability(BaseDurabilityCapability[AgentDepsT]):
    """The capability that turns an agent's model requests and tool calls into ledgerflow steps.

    Attach it when building the agent (or let :func:`run_agent` add it per
    run); it acts only inside :func:`run_agent` and is transparent elsewhere.

    Example::

        from ledgerflow.llm.pydantic_agents import LedgerflowDurability

        support = Agent("openai:gpt-4.1-mini", name="support",
                        capabilities=[LedgerflowDurability()])
    """

    engine_spec = DurabilityEngineSpec(
        engine_name="ledgerflow",
        durable_unit_noun="step",
        durable_container_noun="task",
        # The log holds JSON: results are reduced to JSON in the step and rebuilt when served.
        codec=JSON_CODEC,
        serialization_failure=lambda exc: PermanentError(
            f"A value of the pydantic-ai run cannot be journaled as JSON ({exc}); return "
            "JSON-serializable values (pydantic models, dicts, lists, str, numbers) from tools."),
        # Tools added per run would not be wrapped, so they would run unjournaled.
        unsupported_runtime_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        wrapped_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        toolset_lifecycles={"function": "enter-always", "mcp": "enter-in-durable-unit",
                            "dynamic": "enter-never"},
        # Steps are served back in recorded order, so tool calls must not race each other.
        sequential_tools_in_durable_context=True,
        tool_config_key=TOOL_CONFIG_KEY,
    )

    def __init__(
        self, *, name: str | None = None, models: Mapping[str, Model] | None = None,
    ) -> None:
        """``name`` replaces the agent's name in step names; ``models`` registers run-time ones."""
        super().__init__(models=models, name=name)

    @property
    def in_durable_context(self) -> bool:
        return _ACTIVE.get() is not None

    def get_default_run_id(self) -> str | None:
        journal = _ACTIVE.get()
        return None if journal is None else journal.run_id

    def get_default_conversation_id(self, run_id: str) -> str | None:
        return conversation_id_from_run_id(run_id) if self.in_durable_context else None

    def get_durable_operation_backend(self) -> DurableOperationBackend[Any]:
        return _StepBackend(
            agent_name=self.name, default_model_id=self.default_model_id,
            config=RoleBasedOperationConfig[Mapping[str, Any] | None](
                model=None, event=None, capability=None, tool=None,
                resolve_tool=_tool_options))


def _tool_options(
    operation_id: DurableOperationId, tool: object | None, tool_name: str,
) -> Mapping[str, Any] | Literal[False]:
    """A tool's step options from its metadata: ``{"ledgerflow": {"side_effect": True}}``.

    ``{"ledgerflow": False}`` runs the tool outside any step (called again on
    every attempt): only for a tool that is cheap, local and repeatable.
    """
    del operation_id  # one set of options for every tool operation
    metadata = tool.tool_def.metadata if isinstance(tool, ToolsetTool) else None
    options = (metadata or {}).get(TOOL_CONFIG_KEY, {})
    if options is False:
        return False
    if not isinstance(options, Mapping) or set(options) - {"side_effect"} or not isinstance(
            options.get("side_effect", False), bool):
        raise PermanentError(f"Tool '{tool_name}' has metadata {TOOL_CONFIG_KEY!r}: "
                             f"{options!r}; expected {{'side_effect': True|False}} or False.")
    return options


class _StepRequest(CacheIdentity[Any]):
    """A durable unit's parameters as the step's JSON request (the base's cache-key seam).

    The request is what the step's hash covers, so it holds what decides the
    unit's result and nothing that changes between attempts (clock times,
    fresh run ids, the live run context).
    """

    def __init__(self, operation_id: DurableOperationId) -> None:
        self.operation_id = operation_id

    def project(self, params: Any) -> tuple[object, ...]:
        match self.operation_id:
            case ModelRequestId(model_name=model):
                return ({"model": model, "messages": _stable_messages(params.messages),
                         "model_settings": _jsonable(params.model_settings),
                         "parameters": _jsonable(params.model_request_parameters)},)
            case ModelCompactMessagesId(model_name=model):
                return ({"model": model,
                         "messages": _stable_messages(params.request_context.messages),
                         "instructions": params.instructions},)
            case ToolsetCallToolId():
                return ({"tool": params.name, "args": _jsonable(params.tool_args),
                         "tool_call_id": params.ctx.tool_call_id},)
            case _:
                return (_generic_request(params),)


class _StepBackend(JournalCallableOperationBackend[Mapping[str, Any] | None]):
    """Runs each durable unit pydantic-ai hands it as one ``ctx.step`` of the current run."""

    def bind(
        self, operation: DurableOperation[ParamsT, WireT, ResultT]
    ) -> _Bound[ParamsT, WireT, ResultT]:
        request = _StepRequest(operation.operation_id)
        return super().bind(dataclasses.replace(operation, cache_identity=request))

    async def execute(
        self,
        *,
        operation_id: DurableOperationId,
        name: str,
        body: Callable[[], Awaitable[object]],
        cache_key: tuple[object, ...],
        config: Mapping[str, Any] | None,
    ) -> object:
        journal = _ACTIVE.get()
        if journal is None:  # a unit dispatched after run_agent returned: nothing to journal to
            return await body()
        (request,) = cache_key
        if isinstance(operation_id, ModelRequestId | ModelCompactMessagesId):
            # A missing price fails before the call, not after it was paid for.
            price_of(journal.prices, operation_id.model_name)

        async def call(_request: object) -> Metered:
            token, inside = _ACTIVE.set(None), _IN_STEP.set(True)
            try:
                payload = await body()
            finally:
                _IN_STEP.reset(inside)
                _ACTIVE.reset(token)
            return _metered(operation_id, request, payload, journal.prices)

        side_effect = bool((config or {}).get("side_effect", False))
        return await journal.ctx.step(name, call, request, side_effect=side_effect)


def _metered(
    operation_id: DurableOperationId, request: Any, payload: object, prices: Mapping[str, Price],
) -> Metered:
    """The step's value with the usage the audit view and the budget read."""
    match operation_id:
        case ModelRequestId(model_name=requested) | ModelCompactMessagesId(model_name=requested):
            response: ModelResponse = JSON_CODEC.load(ModelResponse, payload)
            model = response.model_name or requested
            usage = response.usage
            price = price_of(prices, model if model in prices else requested)
            return Metered(
                payload, tokens=usage.input_tokens + usage.output_tokens,
                cost=price.cost(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens),
                detail={"kind": "llm", "model": model, "input_tokens": usage.input_tokens,
                        "output_tokens": usage.output_tokens})
        case ToolsetCallToolId():
            return Metered(payload, detail={"kind": "tool", "tool": request["tool"]})
        case _:
            return Metered(payload, detail={"kind": "pydantic_ai",
                                            "operation": type(operation_id).__name__})


def _stable_messages(messages: Sequence[ModelMessage]) -> list[Any]:
    """The history as JSON without the per-run fields (at message and part level only)."""
    dumped: list[Any] = ModelMessagesTypeAdapter.dump_python(list(messages), mode="json")
    for message in dumped:
        for key in _PER_RUN_FIELDS:
            message.pop(key, None)
        for part in message.get("parts", ()):
            part.pop("timestamp", None)
    return dumped


def _opaque(value: Any) -> str:
    # Live objects (a client in settings, a callable) stand in by type: a repr could hold an
    # address, which would change the request between attempts.
    return f"<{type(value).__name__}>"


def _jsonable(value: Any) -> Any:
    return to_jsonable_python(value, fallback=_opaque)


def _generic_request(params: Any) -> Any:
    """Any other unit's parameters (discovery, validation, events) without live objects."""
    if not dataclasses.is_dataclass(params) or isinstance(params, type):
        return _jsonable(params)
    return {f.name: _jsonable(getattr(params, f.name)) for f in dataclasses.fields(params)
            if not isinstance(getattr(params, f.name), RunContext | ToolsetTool)}
