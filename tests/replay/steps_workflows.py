"""A workflow whose agents make journaled steps: a model call, a tool call, a side effect.

``quote`` asks a (fake) model with :data:`PROMPT` and looks a fare up with a
tool; ``book`` charges the quote (``side_effect=True``). Every step function
appends its name to the file named by ``$STEPS_CALLS`` when it is entered, so
a test can count the live calls a command made (none, offline).

The goal turns on the stories the audit tests tell: ``flaky`` makes the fare
tool fail on the first attempt (a step error, then a retry), ``hang`` makes
the charge outlive the agent's timeout (a side effect whose outcome is
unknown), ``notes`` makes the prompt as long as a real one.

Referenced on the CLI as ``steps_workflows:wf`` (this folder is on sys.path
under pytest).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pydantic import BaseModel

from ledgerflow.contracts import Plan, Task
from ledgerflow.machines import AgentContext, Metered, RetryPolicy, Workflow

#: The model's prompt: a test rewords it to play "someone changed the prompt".
PROMPT = "Price a trip to {city}.{notes}"
MODEL = "fake-mini"


class Goal(BaseModel):
    city: str = "Lisbon"
    flaky: bool = False
    hang: bool = False
    notes: str = ""


class QuoteIn(BaseModel):
    city: str
    flaky: bool
    notes: str


class Quote(BaseModel):
    price: float


class BookIn(BaseModel):
    amount: float
    hang: bool


class Booking(BaseModel):
    receipt: str


def called(name: str) -> None:
    """Note one live call of step function ``name`` in ``$STEPS_CALLS`` (if set)."""
    calls = os.environ.get("STEPS_CALLS")
    if calls:
        with Path(calls).open("a", encoding="utf-8") as out:
            out.write(name + "\n")


def live_calls(calls: Path) -> list[str]:
    """The step functions called live so far, in order."""
    return calls.read_text(encoding="utf-8").split() if calls.exists() else []


def chat(prompt: str) -> Metered:
    called("model.chat")
    return Metered({"price": 120.0}, tokens=50, cost=0.002,
                   detail={"kind": "llm", "model": MODEL, "input_tokens": 40,
                           "output_tokens": 10})


def fares(price: float, attempt: int, *, flaky: bool) -> Metered:
    called("fares_api")
    if flaky and attempt == 1:
        raise ConnectionError("the fare service dropped the line")
    return Metered(price + 10, detail={"kind": "tool", "tool": "fares"})


async def charge(amount: float, *, hang: bool) -> Metered:
    called("charge")
    if hang:
        await asyncio.sleep(30)  # outlives the agent's timeout: nobody knows if it charged
    return Metered({"receipt": f"R-{amount:g}"}, detail={"kind": "tool", "tool": "payments"})


def build(name: str, prompt: str | None = None) -> Workflow:
    """The workflow under ``name``; its model is asked ``prompt`` (default: :data:`PROMPT`,
    read at each call so a test can reword it in place)."""
    flow = Workflow(name, goal=Goal)

    @flow.planner
    async def planner(goal: Goal, ctx: AgentContext) -> Plan:
        return Plan(tasks=[
            Task(id="quote", agent="quote",
                 inputs={"city": "$goal.city", "flaky": "$goal.flaky", "notes": "$goal.notes"}),
            Task(id="book", agent="book", needs=["quote"],
                 inputs={"amount": "$quote.price", "hang": "$goal.hang"}),
        ])

    @flow.agent(input=QuoteIn, output=Quote, name="quote",
                retry=RetryPolicy(max_attempts=2, backoff_s=0.0, jitter=0.0))
    async def quote(inp: QuoteIn, ctx: AgentContext) -> Quote:
        asked = (PROMPT if prompt is None else prompt).format(city=inp.city, notes=inp.notes)
        answer = await ctx.step("model.chat", chat, asked)
        fare = await ctx.step("fares_api", fares, answer["price"], ctx.attempt, flaky=inp.flaky)
        return Quote(price=fare)

    @flow.agent(input=BookIn, output=Booking, name="book", timeout_s=0.5,
                retry=RetryPolicy(max_attempts=1))
    async def book(inp: BookIn, ctx: AgentContext) -> Booking:
        paid = await ctx.step("charge", charge, inp.amount, hang=inp.hang, side_effect=True)
        return Booking(receipt=paid["receipt"])

    return flow


#: The workflow the audit tests record runs of.
wf = build("audit-steps")
#: The same code under another name: what ``rerun --workflow`` is given.
twin = build("audit-steps-twin")
#: A change of prompt, shipped as new code.
reworded = build("audit-steps-reworded", "Quote a trip to {city}, cheapest fare.{notes}")
