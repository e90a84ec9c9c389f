"""Shared pieces of the llm tests: a small domain, workflows whose agents call OpenAIChat,
and readers of the steps a run's log holds.

Not a conftest: ``from conftest import ...`` would clash with other packages'
conftest modules when the whole suite runs in one process.
"""

from __future__ import annotations

from typing import Any

from chat_server import ChatServer
from openai import AsyncOpenAI
from pydantic import BaseModel, Field

from ledgerflow import machines
from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import EventStore
from ledgerflow.llm import OpenAIChat
from ledgerflow.machines import events as ev

MODEL = "gpt-test-mini"


class Goal(BaseModel):
    city: str = "Lisbon"
    nights: int = 2


class QuoteIn(BaseModel):
    city: str
    nights: int


class Quote(BaseModel):
    """A priced stay: what the model is asked for."""

    city: str
    total: float = Field(gt=0)
    currency: str = "EUR"


GOOD = Quote(city="Lisbon", total=236.0)


#: One attempt per task: a failure stays visible in the log instead of being retried away.
ONE_ATTEMPT = machines.RetryPolicy(max_attempts=1, backoff_s=0.0, jitter=0.0)
QUOTE_TASK = Task(id="quote", agent="quote",
                  inputs={"city": "$goal.city", "nights": "$goal.nights"})


def client_for(server: ChatServer) -> AsyncOpenAI:
    """The official client, pointed at the fake server (OpenAIChat turns its retries off)."""
    return AsyncOpenAI(base_url=server.url, api_key="test")


def messages_for(inp: QuoteIn) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You price hotel stays in EUR."},
            {"role": "user", "content": f"{inp.nights} nights in {inp.city}"}]


def quote_workflow(chat: OpenAIChat, *, name: str = "llm-quote",
                   budget: machines.Budget | None = None,
                   retry: machines.RetryPolicy = ONE_ATTEMPT, tasks: int = 1,
                   output: type[Quote] = Quote, **params: Any) -> machines.Workflow:
    """A workflow of ``tasks`` independent ``quote`` tasks, each one ``chat.parse`` call."""
    wf = machines.Workflow(name, goal=Goal, budget=budget or machines.Budget())

    @wf.agent(input=QuoteIn, output=output, name="quote", retry=retry)
    async def quote(inp: QuoteIn, ctx: machines.AgentContext) -> Quote:
        return await chat.parse(ctx, messages_for(inp), output=output, **params)

    plan = [QUOTE_TASK] if tasks == 1 else [
        QUOTE_TASK.model_copy(update={"id": f"quote{i}"}) for i in range(1, tasks + 1)]

    @wf.planner
    async def planner(goal: Goal, ctx: machines.AgentContext) -> Plan:
        return Plan(tasks=plan)

    return wf


async def read_log(store: EventStore, run_id: str) -> list[tuple[int, machines.Event]]:
    return [(env.seq, machines.decode_event(env.data)) for env in await store.read_all(run_id)]


async def steps(store: EventStore, run_id: str) -> list[machines.StepView]:
    """The run's journaled steps, as the audit view reads them."""
    return machines.steps_of(await read_log(store, run_id))


async def failures(store: EventStore, run_id: str) -> list[ev.AgentFailed]:
    return [e for _, e in await read_log(store, run_id) if isinstance(e, ev.AgentFailed)]
