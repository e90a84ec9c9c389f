"""Issue 12, scenario 3: 500 runs driven at once in one process on one SQLite file.

``asyncio.gather`` of 500 ``Orchestrator.start`` of a tiny workflow (a planner
and two tasks, one needing the other) on one store: every run completes,
every log verifies (chain, transitions, determinism), seqs are 1..N, and no
"database is locked" (or any other exception) reaches a caller. Prints its
figures: runs, events written, wall time.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from machines_helpers import BOOK, SEARCH, SearchIn, SearchOut, add_booking, workflow

from ledgerflow.eventstore import check_chain, open_store
from ledgerflow.machines import AgentContext, Orchestrator, RunResult
from ledgerflow.replay.verify import verify_run

RUNS = 500


async def test_500_concurrent_runs_on_one_sqlite_store_all_complete_and_verify(
    tmp_path: Path,
) -> None:
    wf = workflow([SEARCH, BOOK], name="many-runs")

    @wf.agent(input=SearchIn, output=SearchOut, name="search")
    async def search(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        await asyncio.sleep(0)  # yield, so the runs interleave at every step
        return SearchOut(price=100.0)

    add_booking(wf)
    async with open_store(tmp_path / "runs.db") as store:
        orch = Orchestrator(store)
        started = time.perf_counter()
        results = await asyncio.gather(
            *(orch.start(wf, {"city": f"c{i}"}, run_id=f"run-{i:03d}") for i in range(RUNS)),
            return_exceptions=True,
        )
        elapsed = time.perf_counter() - started
        errors = [r for r in results if not isinstance(r, RunResult)]
        assert errors == []  # no "database is locked", nor anything else
        runs = [r for r in results if isinstance(r, RunResult)]
        assert {r.status for r in runs} == {"completed"}, {r.reason for r in runs}
        events = 0
        for run in runs:
            envs = await store.read_all(run.run_id)
            assert [e.seq for e in envs] == list(range(1, len(envs) + 1))
            assert check_chain(run.run_id, envs) is None
            report = await verify_run(store, run.run_id, workflow=wf)
            assert report.ok, (run.run_id, report)
            events += len(envs)
        assert len(await store.runs(status="completed", limit=RUNS + 1)) == RUNS
    print(f"\n500 concurrent runs, one SQLite file: {len(runs)} completed, {events} events "
          f"written in {elapsed:.1f}s ({len(runs) / elapsed:.0f} runs/s), every log verifies")
