"""A workflow for the worker pool's CLI tests: one agent, optionally held at a gate.

A goal with ``gate`` set (a folder) makes the agent announce itself there
(``started-RUN``) and then wait until a file ``release`` appears in it: a
test sees a worker holding a run for as long as it wants, with no sleeps to
tune, then lets it finish. Without a gate the agent answers at once; a goal
with ``confidence`` below 0.5 makes its output held back for a person (the
run waits on an escalation).

Referenced on the CLI as ``replay_pool_workflows:wf`` (this folder is on sys.path
under pytest; a subprocess gets it on PYTHONPATH).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import BaseModel

from ledgerflow.contracts import Plan, Task
from ledgerflow.machines import AgentContext, Workflow

WORKFLOW_REF = "replay_pool_workflows:wf"
#: How long a gated agent waits for its release before giving up (a broken test, not a story).
GATE_LIMIT_S = 120.0


class Goal(BaseModel):
    n: int = 1
    gate: str = ""
    #: Below 0.5 the output is held back for a person: the run waits on an escalation.
    confidence: float = 1.0


class WorkIn(BaseModel):
    n: int
    gate: str
    confidence: float


class WorkOut(BaseModel):
    doubled: int
    confidence: float = 1.0


def started(gate: Path) -> list[str]:
    """The runs whose agent reached the gate, in no particular order."""
    return [p.name.removeprefix("started-") for p in gate.glob("started-*")]


def release(gate: Path) -> None:
    """Let every agent waiting at ``gate`` (now or later) finish."""
    (gate / "release").touch()


wf = Workflow("pool-cli", goal=Goal)


@wf.planner
async def planner(goal: Goal, ctx: AgentContext) -> Plan:
    return Plan(tasks=[Task(id="work", agent="work", inputs={
        "n": "$goal.n", "gate": "$goal.gate", "confidence": "$goal.confidence"})])


@wf.agent(input=WorkIn, output=WorkOut, name="work", timeout_s=GATE_LIMIT_S + 10,
          min_confidence=0.5)
async def work(inp: WorkIn, ctx: AgentContext) -> WorkOut:
    if inp.gate:
        gate = Path(inp.gate)
        (gate / f"started-{ctx.run_id}").touch()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GATE_LIMIT_S
        while not (gate / "release").exists():
            if loop.time() > deadline:
                raise TimeoutError(f"nobody released the gate {gate}")
            await asyncio.sleep(0.02)
    return WorkOut(doubled=inp.n * 2, confidence=inp.confidence)
