"""Shared pieces of the pydantic-ai adapter tests: a scripted model, a fare agent, a workflow.

The pydantic-ai agent looks a fare up with a tool, then answers; its model is a
:class:`FunctionModel` playing a script, and every call the agent makes (model
request or tool) is written to a calls file, one line each, so a test can
count calls across a killed process and the one that resumed its run.
Not a conftest: imported by bare name, also by the crash child script.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import EventStore
from ledgerflow.llm.pydantic_agents import LedgerflowDurability, run_agent
from ledgerflow.machines import AgentContext, Budget, RetryPolicy, Workflow
from ledgerflow.machines import events as ev

MODEL = "fare-model"
#: USD per million tokens in and out: every scripted request uses 1,000 in and 200 out.
PRICES = {MODEL: (1.0, 2.0)}
USAGE = RequestUsage(input_tokens=1_000, output_tokens=200)
REQUEST_COST = (1_000 * 1.0 + 200 * 2.0) / 1_000_000
#: Set in a child's environment: SIGKILL the process inside this call (e.g. "request 2").
CRASH_IN = "LEDGERFLOW_TEST_CRASH_IN"

#: Retries at once, so stories with a rejected output run in milliseconds.
FAST = RetryPolicy(max_attempts=3, backoff_s=0.0, jitter=0.0)


class Goal(BaseModel):
    city: str = "Lisbon"


class FareIn(BaseModel):
    city: str


class Fare(BaseModel):
    """The ledgerflow contract: a fare is positive."""

    city: str
    price: float = Field(gt=0)


class FareDraft(BaseModel):
    """What the pydantic-ai agent is asked for: any number (the contract is ledgerflow's)."""

    city: str
    price: float


class Calls:
    """The calls file: one line per model request or tool call, across processes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def note(self, what: str) -> None:
        with self.path.open("a") as f:
            f.write(what + "\n")
            f.flush()
            os.fsync(f.fileno())
        if os.environ.get(CRASH_IN) == what:
            os.kill(os.getpid(), signal.SIGKILL)

    def lines(self) -> list[str]:
        return self.path.read_text().splitlines() if self.path.exists() else []

    def count(self, what: str) -> int:
        return self.lines().count(what)


def _looked_up(messages: list[ModelMessage]) -> bool:
    return any(isinstance(part, ToolReturnPart) for m in messages for part in m.parts)


def fare_agent(calls: Calls, prices: list[float] | None = None, *,
               tool_options: dict[str, Any] | None = None,
               built_durable: bool = False) -> Agent[None, FareDraft]:
    """The pydantic-ai agent: request 1 calls ``lookup_fare``, request 2 answers.

    The n-th answer (counted in the calls file) gives ``prices[n]`` (the last
    one again past the end), so a retried attempt can answer differently.
    ``tool_options`` become the tool's ``ledgerflow`` metadata;
    ``built_durable`` attaches :class:`LedgerflowDurability` at construction.
    """
    answers = prices or [12.5]

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if not _looked_up(messages):
            calls.note("request 1")
            return ModelResponse(parts=[ToolCallPart("lookup_fare", {"city": "Lisbon"})],
                                 usage=USAGE, model_name=MODEL)
        answered = calls.count("request 2")
        calls.note("request 2")
        price = answers[min(answered, len(answers) - 1)]
        final = info.output_tools[0].name
        return ModelResponse(parts=[ToolCallPart(final, {"city": "Lisbon", "price": price})],
                             usage=USAGE, model_name=MODEL)

    agent = Agent(FunctionModel(script, model_name=MODEL), name="fares", output_type=FareDraft,
                  capabilities=[LedgerflowDurability()] if built_durable else None)

    @agent.tool_plain(metadata=None if tool_options is None else {"ledgerflow": tool_options})
    def lookup_fare(city: str) -> dict[str, Any]:
        calls.note("tool lookup_fare")
        return {"city": city, "base": 12.5}

    return agent


def text_agent(calls: Calls) -> Agent[None, str]:
    """A one-request agent answering in text (for the budget and name stories)."""

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.note("request")
        return ModelResponse(parts=[TextPart("ok")], usage=USAGE, model_name=MODEL)

    return Agent(FunctionModel(script, model_name=MODEL), name="writer")


def fare_workflow(agent: Agent[None, FareDraft], *, budget: Budget | None = None,
                  name: str = "fares") -> Workflow:
    """One task, ``fare``, whose ledgerflow agent runs ``agent`` and returns its output."""
    wf = Workflow(name, goal=Goal, budget=budget or Budget())

    @wf.planner
    async def plan(goal: Goal, ctx: AgentContext) -> Plan:
        return Plan(tasks=[Task(id="fare", agent="fare", inputs={"city": "$goal.city"})])

    @wf.agent(input=FareIn, output=Fare, name="fare", retry=FAST)
    async def fare(inp: FareIn, ctx: AgentContext) -> FareDraft:
        return await run_agent(ctx, agent, f"What does a flight to {inp.city} cost?",
                               prices=PRICES)

    return wf


async def read_log(store: EventStore, run_id: str) -> list[ev.Event]:
    return [ev.decode_event(env.data) async for env in store.read(run_id)]


async def steps_recorded(store: EventStore, run_id: str) -> list[ev.StepRecorded]:
    return [e for e in await read_log(store, run_id) if isinstance(e, ev.StepRecorded)]
