"""A run's cost budget stops model calls once it is spent: within one agent making several
calls, inside a step that itself calls the model, and across tasks; the server sees no
request after that, and the task fails with the budget's reason."""

from __future__ import annotations

import functools

from chat_server import ChatServer, reply
from llm_helpers import GOOD, MODEL, Goal, Quote, client_for, failures, steps

from ledgerflow import machines
from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import EventStore
from ledgerflow.llm import OpenAIChat
from ledgerflow.machines import AgentContext, Orchestrator

#: 1,000 input tokens at 10 USD per million: each call costs exactly 0.01.
PRICES = {MODEL: (10.0, 0.0)}
BUDGET = machines.Budget(max_cost=0.025)
ONCE = machines.RetryPolicy(max_attempts=1)


def _answers(server: ChatServer) -> None:
    server.then = reply(GOOD, prompt_tokens=1_000, completion_tokens=0)


def _days_workflow(chat: OpenAIChat, name: str, *, nested: bool = False) -> machines.Workflow:
    wf = machines.Workflow(name, goal=Goal, budget=BUDGET)

    async def five_days(ctx: AgentContext) -> list[Quote]:
        return [await chat.parse(ctx, f"Day {day} in Lisbon", output=Quote)
                for day in range(1, 6)]

    @wf.agent(input=Goal, output=Quote, name="itinerary", retry=ONCE)
    async def itinerary(inp: Goal, ctx: AgentContext) -> Quote:
        if nested:  # the model calls are steps inside a step of the agent's own
            days = [Quote.model_validate(q) for q in await ctx.step(
                "research_days", functools.partial(five_days, ctx))]
        else:
            days = await five_days(ctx)
        return Quote(city=inp.city, total=sum(d.total for d in days))

    @wf.planner
    async def plan(goal: Goal, ctx: AgentContext) -> Plan:
        return Plan(tasks=[Task(id="itinerary", agent="itinerary",
                                inputs={"city": "$goal.city", "nights": "$goal.nights"})])

    return wf


def _assert_refused_for_budget(failed: machines.events.AgentFailed) -> None:
    assert failed.error_type == "ledgerflow.BudgetExhaustedError"
    assert "cost budget" in failed.message
    assert "openai.chat" in failed.message


async def test_one_agents_calls_stop_once_the_budget_is_spent(
    orch: Orchestrator, store: EventStore, chat_server: ChatServer
) -> None:
    _answers(chat_server)
    chat = OpenAIChat(client_for(chat_server), MODEL, prices=PRICES)
    run = await orch.start(_days_workflow(chat, "llm-budget-days"), Goal())

    # 0.01, 0.02 (under 0.025), 0.03 (spent): the fourth call is never made.
    assert len(chat_server.requests) == 3
    assert run.status != "completed"
    [failed] = await failures(store, run.run_id)
    _assert_refused_for_budget(failed)
    assert run.state.cost > BUDGET.max_cost  # type: ignore[operator]
    assert len(await steps(store, run.run_id)) == 3


async def test_calls_inside_a_step_of_the_agent_stop_once_the_budget_is_spent(
    orch: Orchestrator, store: EventStore, chat_server: ChatServer
) -> None:
    _answers(chat_server)
    chat = OpenAIChat(client_for(chat_server), MODEL, prices=PRICES)
    run = await orch.start(_days_workflow(chat, "llm-budget-nested", nested=True), Goal())

    assert len(chat_server.requests) == 3
    [failed] = await failures(store, run.run_id)
    _assert_refused_for_budget(failed)
    names = [s.name for s in await steps(store, run.run_id)]
    assert names.count("openai.chat") == 3
    assert "research_days" in names


async def test_a_later_task_makes_no_call_once_an_earlier_one_spent_the_budget(
    orch: Orchestrator, store: EventStore, chat_server: ChatServer
) -> None:
    _answers(chat_server)
    chat = OpenAIChat(client_for(chat_server), MODEL, prices=PRICES)
    wf = machines.Workflow("llm-budget-tasks", goal=Goal, budget=BUDGET)

    @wf.agent(input=Goal, output=Quote, name="two_calls", retry=ONCE)
    async def two_calls(inp: Goal, ctx: AgentContext) -> Quote:
        await chat.parse(ctx, "first look", output=Quote)
        return await chat.parse(ctx, "second look", output=Quote)

    inputs = {"city": "$goal.city", "nights": "$goal.nights"}

    @wf.planner
    async def plan(goal: Goal, ctx: AgentContext) -> Plan:
        return Plan(tasks=[Task(id="first", agent="two_calls", inputs=inputs),
                           Task(id="second", agent="two_calls", needs=["first"],
                                inputs=inputs)])

    run = await orch.start(wf, Goal())

    # first: 0.01, 0.02; second: 0.03 (spent), then refused.
    assert len(chat_server.requests) == 3
    assert "first" in run.outputs
    assert "second" not in run.outputs
    [failed] = await failures(store, run.run_id)
    assert failed.task_id == "second"
    _assert_refused_for_budget(failed)
