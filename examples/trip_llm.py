"""A trip planned by real LLM agents: OpenAIChat against any OpenAI-compatible server.

Three tasks: ``shortlist`` asks the model for hotels, ``estimate`` asks it to
price the stay (with a confidence the contract checks), and ``hold`` places a
hold on the chosen hotel as a side-effecting journaled step. Every model call
is a step in the run's log with its prompt, raw answer, tokens and cost; a
crash mid-agent resumes without asking the model again.

The server comes from the environment (nothing is read at import time):

- ``OPENAI_BASE_URL`` (default ``https://api.openai.com/v1``; a vLLM, Ollama,
  LM Studio or OpenRouter URL works the same) and ``OPENAI_API_KEY``;
- ``LEDGERFLOW_MODEL`` (default ``gpt-4.1-mini``);
- ``LEDGERFLOW_PRICE_IN`` / ``LEDGERFLOW_PRICE_OUT``: USD per million input and
  output tokens of that model (default 0: tokens are still counted).

Run it with the CLI (extra ``ledgerflow[openai]``)::

    ledgerflow run ledgerflow.examples.trip_llm:wf --goal '{"city": "Lisbon", "nights": 3}'
"""

from __future__ import annotations

import functools
import hashlib
import os
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from ledgerflow.contracts import Plan, Task
from ledgerflow.machines import AgentContext, Budget, Metered, RetryPolicy, Workflow

if TYPE_CHECKING:
    from ledgerflow.llm import OpenAIChat

__all__ = ["Estimate", "Shortlist", "TripRequest", "chat", "wf"]


class TripRequest(BaseModel):
    city: str
    nights: int = Field(ge=1, le=60)


class ShortlistIn(BaseModel):
    city: str
    nights: int


class Hotel(BaseModel):
    name: str
    area: str


class Shortlist(BaseModel):
    hotels: list[Hotel] = Field(min_length=1, max_length=5)
    best: str = Field(min_length=1, description="the name of the hotel you recommend")


class EstimateIn(BaseModel):
    city: str
    nights: int
    hotel: str


class Estimate(BaseModel):
    total_usd: float = Field(gt=0)
    confidence: float = Field(ge=0, le=1)


class HoldIn(BaseModel):
    hotel: str
    total_usd: float


class Hold(BaseModel):
    reference: str


@functools.cache
def chat() -> OpenAIChat:
    """The model every agent of this workflow asks, configured from the environment."""
    from openai import AsyncOpenAI  # noqa: PLC0415 - the [openai] extra, needed only to run

    from ledgerflow.llm import OpenAIChat, Price  # noqa: PLC0415

    model = os.environ.get("LEDGERFLOW_MODEL", "gpt-4.1-mini")
    price = Price(float(os.environ.get("LEDGERFLOW_PRICE_IN", "0")),
                  float(os.environ.get("LEDGERFLOW_PRICE_OUT", "0")))
    client = AsyncOpenAI(base_url=os.environ.get("OPENAI_BASE_URL"),
                         api_key=os.environ.get("OPENAI_API_KEY", "not-needed-by-local-servers"))
    return OpenAIChat(client, model, prices={model: price}, max_concurrent=4)


wf = Workflow("trip-llm", goal=TripRequest, budget=Budget(max_cost=1.0, deadline_s=600))
_RETRY = RetryPolicy(max_attempts=3, backoff_s=1.0)


@wf.planner
async def plan(goal: TripRequest, ctx: AgentContext) -> Plan:
    return Plan(tasks=[
        Task(id="shortlist", agent="shortlist",
             inputs={"city": "$goal.city", "nights": "$goal.nights"}),
        Task(id="estimate", agent="estimate", needs=["shortlist"],
             inputs={"city": "$goal.city", "nights": "$goal.nights",
                     "hotel": "$shortlist.best"}),
        Task(id="hold", agent="hold", needs=["shortlist", "estimate"],
             inputs={"hotel": "$shortlist.best", "total_usd": "$estimate.total_usd"}),
    ])


@wf.agent(input=ShortlistIn, output=Shortlist, retry=_RETRY, timeout_s=120)
async def shortlist(inp: ShortlistIn, ctx: AgentContext) -> Shortlist:
    return await chat().parse(ctx, [
        {"role": "system", "content": "You are a careful travel agent. Answer in JSON."},
        {"role": "user", "content": f"Suggest up to three hotels in {inp.city} for "
                                    f"{inp.nights} nights, each with its area, and name "
                                    "the best one."},
    ], output=Shortlist, temperature=0)


@wf.agent(input=EstimateIn, output=Estimate, retry=_RETRY, min_confidence=0.5, timeout_s=120)
async def estimate(inp: EstimateIn, ctx: AgentContext) -> Estimate:
    return await chat().parse(ctx, [
        {"role": "system", "content": "You price hotel stays. Answer in JSON."},
        {"role": "user", "content": f"Estimate the total in USD for {inp.nights} nights at "
                                    f"{inp.hotel} in {inp.city}, with your confidence (0-1)."},
    ], output=Estimate, temperature=0)


def _place_hold(hotel: str, total_usd: float, *, key: str) -> Metered:
    # A stand-in for the hotel's API: the idempotency key makes the reference stable.
    reference = "H-" + hashlib.sha256(f"{key}/{hotel}".encode()).hexdigest()[:8].upper()
    return Metered({"reference": reference}, detail={"kind": "tool", "tool": "place_hold"})


@wf.agent(input=HoldIn, output=Hold, timeout_s=60)
async def hold(inp: HoldIn, ctx: AgentContext) -> Hold:
    # The key differs per run, so it is bound outside the step's request: an
    # offline rerun (a new run) then asks for the same request as the original.
    place = functools.partial(_place_hold, key=ctx.idempotency_key)
    placed = await ctx.step("place_hold", place, inp.hotel, inp.total_usd, side_effect=True)
    return Hold.model_validate(placed)
