"""Runs the fare workflow on a SQLite file, to be SIGKILLed inside one of its calls.

Usage: ``python pydantic_crash_child.py DB CALLS RUN_ID [side-effect-tool]`` with
``LEDGERFLOW_TEST_CRASH_IN`` naming the call to die in (see :mod:`pydantic_helpers`);
``side-effect-tool`` marks the agent's tool ``side_effect=True``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from pydantic_helpers import Calls, Goal, fare_agent, fare_workflow

from ledgerflow.eventstore import open_store
from ledgerflow.machines import Orchestrator


async def main(db: str, calls: str, run_id: str, *mode: str) -> None:
    options = {"side_effect": True} if "side-effect-tool" in mode else None
    wf = fare_workflow(fare_agent(Calls(Path(calls)), tool_options=options))
    async with open_store(db) as store:
        await Orchestrator(store).start(wf, Goal(), run_id=run_id)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
