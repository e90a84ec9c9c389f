"""A wide map-reduce: score N documents in parallel, then rank them, spread over a worker pool.

The planner asks for one ``score`` task per document and a ``rank`` task that
needs them all. ``score`` stands in for a model call (it naps ``nap_s``) and
says which process ran it; at most ``max_concurrent=6`` scoring attempts run
at once across the whole pool (a provider's concurrency limit), and no more
than 600 start in any minute. Started by two ``ledgerflow worker`` processes,
the scoring spreads over both while one of them alone decides and records the
run's events.

Example::

    ledgerflow worker --workflow ledgerflow.examples.fanout:wf --task-concurrency 4 &
    ledgerflow worker --workflow ledgerflow.examples.fanout:wf --task-concurrency 4 &
    ledgerflow submit ledgerflow.examples.fanout:wf --goal '{"documents": 40}'
"""

from __future__ import annotations

import asyncio
import os

from pydantic import BaseModel, Field

from ledgerflow.contracts import Plan, Task
from ledgerflow.machines import AgentContext, Workflow

__all__ = ["Corpus", "wf"]


class Corpus(BaseModel):
    documents: int = Field(default=40, ge=1, le=10_000)
    nap_s: float = Field(default=0.05, ge=0, le=10)


class Document(BaseModel):
    number: int
    nap_s: float


class Score(BaseModel):
    number: int
    score: float
    pid: int


class Ranking(BaseModel):
    best: list[int]


wf = Workflow("fanout", goal=Corpus, max_concurrency=64)


@wf.planner
async def plan(goal: Corpus, ctx: AgentContext) -> Plan:
    scores = [Task(id=f"score_{i}", agent="score", inputs={"number": i, "nap_s": goal.nap_s})
              for i in range(goal.documents)]
    rank = Task(id="rank", agent="rank", needs=[t.id for t in scores],
                inputs={"scores": [f"${t.id}.score" for t in scores]})
    return Plan(tasks=[*scores, rank])


@wf.agent(input=Document, output=Score, max_concurrent=6, per_minute=600)
async def score(inp: Document, ctx: AgentContext) -> Score:
    await asyncio.sleep(inp.nap_s)
    return Score(number=inp.number, score=(inp.number * 7919) % 101 / 100, pid=os.getpid())


class Scores(BaseModel):
    scores: list[float]


@wf.agent(input=Scores, output=Ranking)
async def rank(inp: Scores, ctx: AgentContext) -> Ranking:
    order = sorted(range(len(inp.scores)), key=lambda i: -inp.scores[i])
    return Ranking(best=order[:5])
