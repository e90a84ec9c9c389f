"""A process whose agent asks a model twice through OpenAIChat and can die (SIGKILL) between.

Run as ``python openai_resume_child.py DB RUN_ID SERVER_URL``: it starts run
RUN_ID in DB; the agent asks the chat server at SERVER_URL for a quote, then
kills itself once that answer is in the log (``OPENAI_CHILD_MAY_DIE=1``, set
only when run as a script), before asking for the second. The test resumes
the run in its own process with this module's ``wf``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from openai import AsyncOpenAI
from pydantic import BaseModel, Field

from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import open_store
from ledgerflow.llm import OpenAIChat
from ledgerflow.machines import AgentContext, Orchestrator, Workflow

MODEL = "gpt-test-mini"


class Goal(BaseModel):
    server_url: str


class Quote(BaseModel):
    city: str
    total: float = Field(gt=0)
    currency: str = "EUR"


class Checked(BaseModel):
    quote: Quote
    second_opinion: Quote


wf = Workflow("llm-openai-resume-child", goal=Goal)


@wf.planner
async def planner(goal: Goal, ctx: AgentContext) -> Plan:
    return Plan(tasks=[Task(id="price", agent="price", inputs={"server_url": "$goal.server_url"})])


@wf.agent(input=Goal, output=Checked, name="price")
async def price(inp: Goal, ctx: AgentContext) -> Checked:
    chat = OpenAIChat(AsyncOpenAI(base_url=inp.server_url, api_key="test"), MODEL,
                      prices={MODEL: (0.4, 1.6)})
    quote = await chat.parse(ctx, "Two nights in Lisbon, priced.", output=Quote)
    if os.environ.get("OPENAI_CHILD_MAY_DIE") == "1":
        os.kill(os.getpid(), signal.SIGKILL)  # the first answer is durable; the second not asked
    second = await chat.parse(ctx, "Check that price again.", output=Quote)
    return Checked(quote=quote, second_opinion=second)


async def main(db: str, run_id: str, server_url: str) -> None:
    async with open_store(db) as store:
        await Orchestrator(store).start(wf, Goal(server_url=server_url), run_id=run_id)


if __name__ == "__main__":
    os.environ["OPENAI_CHILD_MAY_DIE"] = "1"
    asyncio.run(main(*sys.argv[1:4]))
