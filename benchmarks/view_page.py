"""How large the one-file run page of a 1,000-task run is, and how long it takes to build.

The run is real (the orchestrator on one SQLite file): ``--tasks`` tasks in
layers of 50 (task ``i`` needs task ``i - 50``), every attempt makes
``--steps`` journaled steps (model and tool calls, alternating), every other
task fails its first attempt and is retried, and one task in 100 reports a
low confidence that the workflow's reviewer accepts (an escalation and its
resolution). At the defaults that is about 20,000 events.

Run from the repo root::

    python -m benchmarks.view_page                 # 1,000 tasks
    python -m benchmarks.view_page --tasks 100 --out /tmp/run.html

It prints the run's event count, the time to read and fold the log into the
page document, to render the page, and the page's size in bytes. The
browser tests (``tests/console/test_console_browser.py``) time its load in
headless Chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel, Field

from ledgerflow.console.page import render_run_page
from ledgerflow.console.page_data import page_document
from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import open_store
from ledgerflow.machines import (
    AgentContext,
    Budget,
    EscalationRequest,
    Metered,
    Orchestrator,
    Resolution,
    RetryPolicy,
    Workflow,
)

__all__ = ["BigGoal", "make_big_run", "measure", "wf"]

LAYER = 50


class BigGoal(BaseModel):
    tasks: int = Field(ge=1)
    steps: int = Field(default=6, ge=0)


class WorkIn(BaseModel):
    i: int
    steps: int
    upstream: int = 0


class WorkOut(BaseModel):
    value: int
    confidence: float = 1.0
    api_token: str = Field(default="tok-never-shown", json_schema_extra={"redact": True})


wf = Workflow("console-big-page", goal=BigGoal, max_concurrency=64,
              budget=Budget(max_retries=100_000))


@wf.planner
async def plan_big(goal: BigGoal, ctx: AgentContext) -> Plan:
    return Plan(tasks=[
        Task(id=f"t{i:04d}", agent="work",
             needs=[f"t{i - LAYER:04d}"] if i >= LAYER else [],
             inputs={"i": i, "steps": "$goal.steps",
                     **({"upstream": f"$t{i - LAYER:04d}.value"} if i >= LAYER else {})})
        for i in range(goal.tasks)])


async def _model(prompt: str) -> Metered:
    return Metered({"text": f"answer to {prompt}"}, tokens=120, cost=0.0004,
                   detail={"kind": "llm", "model": "fake-mini"})


def _tool(query: str) -> Metered:
    return Metered({"rows": 3, "query": query}, detail={"kind": "tool", "tool": "search"})


@wf.agent(input=WorkIn, output=WorkOut, min_confidence=0.5,
          retry=RetryPolicy(max_attempts=3, backoff_s=0.0))
async def work(inp: WorkIn, ctx: AgentContext) -> WorkOut:
    for n in range(inp.steps):
        if n % 2 == 0:
            await ctx.step(f"model.chat.{n}", _model, f"task {inp.i} step {n}")
        else:
            await ctx.step(f"search.{n}", _tool, f"q{inp.i}.{n}")
    if inp.i % 2 == 1 and ctx.attempt == 1:
        raise RuntimeError(f"upstream API flaked for task {inp.i}")
    return WorkOut(value=inp.i + inp.upstream, confidence=0.3 if inp.i % 100 == 7 else 0.9)


@wf.on_escalation
async def review(request: EscalationRequest) -> Resolution | None:
    if request.kind == "low_confidence":
        return Resolution.accept(request.candidate, note="checked by the benchmark's reviewer")
    return None


async def make_big_run(db: Path, *, tasks: int = 1000, steps: int = 6) -> str:
    """Run the big workflow once into ``db``; the run id."""
    async with open_store(db) as store:
        run = await Orchestrator(store).start(wf, BigGoal(tasks=tasks, steps=steps))
        return run.run_id


async def measure(db: Path, run_id: str) -> tuple[dict[str, float], str]:
    """Build and render the page of ``run_id``: (seconds and bytes, the page)."""
    async with open_store(db) as store:
        started = time.perf_counter()
        doc = await page_document(store, run_id, workflow=wf)
        built = time.perf_counter()
    html = render_run_page(doc, api=None)
    rendered = time.perf_counter()
    return ({"events": float(doc["run"]["events"]), "document_s": built - started,
             "render_s": rendered - built, "bytes": float(len(html.encode("utf-8")))}, html)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "big.db"
        started = time.perf_counter()
        run_id = asyncio.run(make_big_run(db, tasks=args.tasks, steps=args.steps))
        print(f"run {run_id}: {args.tasks} tasks, made in {time.perf_counter() - started:.1f} s")
        result, html = asyncio.run(measure(db, run_id))
    if args.out is not None:
        args.out.write_text(html, encoding="utf-8")
    print(f"events {int(result['events'])}; page document {result['document_s']:.2f} s; "
          f"render {result['render_s']:.2f} s; page {int(result['bytes']):,} bytes"
          + (f" -> {args.out}" if args.out else ""))


if __name__ == "__main__":
    main()
