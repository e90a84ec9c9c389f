"""Steps: the per-step overhead of ``ctx.step`` (a journaled call inside an agent), in µs.

One agent makes ``n`` sequential steps of a no-op function; the overhead per
step is (time with n steps - time with none) / n, so the run's own events are
not counted. Every step's event is durable before ``ctx.step`` returns, so a
sequential step costs one commit; ``--parallel`` agents stepping at once
share commits (group commit). Printed beside the same work done by hand on
raw aiosqlite (one insert + commit per step, WAL + FULL): the floor for a
durable step on this disk; and with ``synchronous=normal`` (no fsync per
commit), which leaves mostly the CPU cost of the step.

    python -m benchmarks.rl_steps --n 500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time

import aiosqlite
import msgspec
from pydantic import BaseModel

from benchmarks._common import DURABLE_PRAGMAS, fresh_db
from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import open_store
from ledgerflow.machines import AgentContext, Orchestrator, Workflow


class Goal(BaseModel):
    steps: int
    agents: int = 1


class In(BaseModel):
    steps: int


class Out(BaseModel):
    total: int


def noop(i: int) -> int:
    return i


wf = Workflow("bench-steps", goal=Goal, max_concurrency=64)


@wf.planner
async def planner(goal: Goal, ctx: AgentContext) -> Plan:
    return Plan(tasks=[Task(id=f"a{i}", agent="stepper", inputs={"steps": goal.steps})
                       for i in range(goal.agents)])


@wf.agent(input=In, output=Out, name="stepper")
async def stepper(inp: In, ctx: AgentContext) -> Out:
    total = 0
    for i in range(inp.steps):
        total += await ctx.step("noop", noop, i)
    return Out(total=total)


async def _ledgerflow(db: str, steps: int, agents: int, *, normal: bool = False) -> float:
    async with open_store(f"sqlite:///{db}?synchronous=normal" if normal else db) as store:
        started = time.perf_counter()
        run = await Orchestrator(store).start(wf, Goal(steps=steps, agents=agents))
        seconds = time.perf_counter() - started
    assert run.status == "completed", run.reason
    return seconds


async def _raw(db: str, steps: int) -> float:
    async with aiosqlite.connect(db) as conn:
        for pragma in DURABLE_PRAGMAS:
            await conn.execute(pragma)
        await conn.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, data TEXT NOT NULL)")
        await conn.commit()
        started = time.perf_counter()
        for i in range(steps):
            value = noop(i)
            data = msgspec.json.encode({"name": "noop", "args": [i], "result": value}).decode()
            await conn.execute("INSERT INTO events (data) VALUES (?)", (data,))
            await conn.commit()
        return time.perf_counter() - started


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def measure(n: int, *, runs: int, parallel: int, directory: str) -> dict[str, float]:
    """Median µs per step for each way of stepping, over ``runs`` rounds."""
    base: list[float] = []
    seq: list[float] = []
    par: list[float] = []
    raw: list[float] = []
    normal_base: list[float] = []
    normal: list[float] = []
    for r in range(runs):
        def fresh(name: str, r: int = r) -> str:
            return fresh_db(directory, f"{name}-{r}.db")

        base.append(asyncio.run(_ledgerflow(fresh("base"), 0, 1)))
        seq.append(asyncio.run(_ledgerflow(fresh("seq"), n, 1)))
        par.append(asyncio.run(_ledgerflow(fresh("par"), n // parallel, parallel)))
        raw.append(asyncio.run(_raw(fresh("raw"), n)))
        normal_base.append(asyncio.run(_ledgerflow(fresh("nbase"), 0, 1, normal=True)))
        normal.append(asyncio.run(_ledgerflow(fresh("normal"), n, 1, normal=True)))
    base_s = _median(base)
    steps_par = (n // parallel) * parallel
    out = {
        "n": n,
        "sequential_us_per_step": (_median(seq) - base_s) / n * 1e6,
        "parallel_agents": parallel,
        "parallel_us_per_step": (_median(par) - base_s) / steps_par * 1e6,
        "sequential_normal_us_per_step": (_median(normal) - _median(normal_base)) / n * 1e6,
        "raw_aiosqlite_commit_per_step_us": _median(raw) / n * 1e6,
    }
    out["sequential_vs_raw"] = (out["sequential_us_per_step"]
                                / out["raw_aiosqlite_commit_per_step_us"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--n", type=int, default=500, help="steps per measurement")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=20, help="agents stepping at once")
    parser.add_argument("--dir", default=os.environ.get("BENCH_DIR"))
    args = parser.parse_args()
    directory = args.dir or tempfile.mkdtemp(prefix="rlbench-steps-")
    print(json.dumps(measure(args.n, runs=args.runs, parallel=args.parallel,
                             directory=directory)))


if __name__ == "__main__":
    main()
