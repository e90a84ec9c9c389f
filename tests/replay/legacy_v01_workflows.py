"""Workflows used to write the v0.1 compatibility fixture (tests/fixtures/v0_1.db).

Tiny and deterministic: no clock, no randomness, no I/O in any agent output.
Only the import lines differ between the v0.1 (runledger) and later ports.
"""

from __future__ import annotations

from pydantic import BaseModel

from ledgerflow import AgentContext, PermanentError, Plan, RetryPolicy, Task, Workflow

__all__ = ["LookupInput", "LookupOutput", "PermanentGoal", "permanent_wf"]


class PermanentGoal(BaseModel):
    item: str


class LookupInput(BaseModel):
    item: str


class LookupOutput(BaseModel):
    price: float


permanent_wf = Workflow("legacy_permanent", goal=PermanentGoal)


@permanent_wf.planner
async def plan(goal: PermanentGoal, ctx: AgentContext) -> Plan:
    return Plan(tasks=[Task(id="lookup", agent="lookup", inputs={"item": "$goal.item"})])


@permanent_wf.agent(input=LookupInput, output=LookupOutput,
                    retry=RetryPolicy(max_attempts=3, backoff_s=0.0))
async def lookup(inp: LookupInput, ctx: AgentContext) -> LookupOutput:
    """Always fails permanently: the task escalates at once and the run waits."""
    raise PermanentError(f"No price exists for item '{inp.item}'.")
