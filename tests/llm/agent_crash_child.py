"""A process whose agent asks a model, calls a tool, asks again, and can die with SIGKILL.

Run as ``python agent_crash_child.py DB RUN_ID BASE_URL TOOL_FILE KILL_AT``.
The agent of task ``answer`` makes model request 1 (``OpenAIChat.parse``),
the ``lookup`` tool step (appends a line to TOOL_FILE each time it runs) and
model request 2. KILL_AT names where the process kills itself: at the tool's
entry (``tool``), after the tool and before request 2 (``after-tool``), after
request 2 (``after-model``), or ``-`` (never). The crash test resumes the run
in its own process, where nothing dies.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from openai import AsyncOpenAI
from pydantic import BaseModel

from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import open_store
from ledgerflow.llm import OpenAIChat
from ledgerflow.machines import AgentContext, Metered, Orchestrator, Workflow


class Goal(BaseModel):
    question: str
    base_url: str
    tool_file: str
    kill_at: str = "-"


class In(BaseModel):
    question: str
    base_url: str
    tool_file: str
    kill_at: str


class Topic(BaseModel):
    topic: str


class FinalAnswer(BaseModel):
    answer: str


wf = Workflow("agent-crash", goal=Goal)


@wf.planner
async def planner(goal: Goal, ctx: AgentContext) -> Plan:
    return Plan(tasks=[Task(id="answer", agent="answer", inputs={
        "question": "$goal.question", "base_url": "$goal.base_url",
        "tool_file": "$goal.tool_file", "kill_at": "$goal.kill_at"})])


def maybe_die(point: str, kill_at: str) -> None:
    if point == kill_at and os.environ.get("AGENT_CRASH_CHILD_MAY_DIE") == "1":
        os.kill(os.getpid(), signal.SIGKILL)


def lookup(topic: str, tool_file: str, kill_at: str) -> Metered:
    maybe_die("tool", kill_at)
    with Path(tool_file).open("a", encoding="utf-8") as out:
        out.write(f"lookup {topic}\n")
    return Metered({"fact": f"{topic} is 42"}, detail={"kind": "tool", "tool": "lookup"})


@wf.agent(input=In, output=FinalAnswer, name="answer")
async def answer(inp: In, ctx: AgentContext) -> FinalAnswer:
    chat = OpenAIChat(AsyncOpenAI(base_url=inp.base_url, api_key="test"), "fake-model",
                      prices={"fake-model": (1.0, 2.0)})
    topic = await chat.parse(ctx, [{"role": "user", "content": inp.question}], output=Topic)
    fact = await ctx.step("lookup", lookup, topic.topic, inp.tool_file, inp.kill_at)
    maybe_die("after-tool", inp.kill_at)
    final = await chat.parse(ctx, [
        {"role": "user", "content": inp.question},
        {"role": "user", "content": f"lookup result: {fact['fact']}"},
    ], output=FinalAnswer)
    maybe_die("after-model", inp.kill_at)
    return final


async def main(db: str, run_id: str, base_url: str, tool_file: str, kill_at: str) -> None:
    goal = Goal(question="What is the answer?", base_url=base_url, tool_file=tool_file,
                kill_at=kill_at)
    async with open_store(db) as store:
        await Orchestrator(store).start(wf, goal, run_id=run_id)


if __name__ == "__main__":
    os.environ["AGENT_CRASH_CHILD_MAY_DIE"] = "1"
    asyncio.run(main(*sys.argv[1:6]))
