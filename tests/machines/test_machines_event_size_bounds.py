"""Every event whose size grows with an input or a plan fits in the log.

Before: an invalid output with three 300,000-character keys made a 1.8 MB
OutputRejected (lists of up to 32 errors were never measured), a waiting run
with 6,500 escalated tasks made a 1.33 MB RunWaiting, and a resume with as
many lost attempts an equally large RunResumed: each failed with
EventTooLargeError and stranded the run, and every resume failed the same
way. A run's recorded ``max_event_bytes`` is small here so the plans stay
small. Real SQLite files throughout.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from machines_helpers import FAST, Goal, SearchIn, of, read_log, workflow
from pydantic import BaseModel

from ledgerflow.contracts import Task
from ledgerflow.eventstore import open_store
from ledgerflow.machines import AgentContext, Orchestrator, PermanentError, encode_event
from ledgerflow.machines import events as ev
from ledgerflow.machines.decisions import fitted, over_the_limit
from ledgerflow.machines.state import RunState
from ledgerflow.replay.verify import verify_run

LIMIT = 200_000


class IntMap(BaseModel):
    m: dict[str, int]


class Done(BaseModel):
    ok: bool = True


def _fits(log: list[ev.Event]) -> None:
    assert max(len(encode_event(e)) for e in log) <= LIMIT


async def test_invalid_output_with_a_few_long_errors_is_rejected_not_stranded(
    tmp_path: Path,
) -> None:
    """Three 60,000-character keys: each error quotes its key, the reason quotes them all."""
    key = 60_000
    wf = workflow([Task(id="a", agent="a", inputs={"city": "$goal.city"})])

    @wf.agent(input=SearchIn, output=IntMap, name="a", retry=FAST)
    async def agent(inp: SearchIn, ctx: AgentContext) -> dict[str, Any]:
        if ctx.attempt == 1:
            return {"m": {"k" * key: "notint", "j" * key: "no", "l" * key: "x"}}
        return {"m": {"k": 1}}

    async with open_store(tmp_path / "runs.db", max_event_bytes=LIMIT) as store:
        run = await Orchestrator(store).start(wf, Goal())

        assert run.status == "completed", run.reason
        log = await read_log(store, run.run_id)
        [rejected] = of(log, ev.OutputRejected)
        assert len(rejected.errors) >= 1
        assert all(len(e) <= 1000 for e in rejected.errors)
        _fits(log)
        assert (await verify_run(store, run.run_id, workflow=wf)).ok


def _many(n: int, id_len: int) -> list[Task]:
    return [Task(id=f"t{i:0{id_len - 1}d}", agent="a", inputs={"city": "$goal.city"})
            for i in range(n)]


async def test_waiting_on_hundreds_of_long_named_escalations_is_not_stranded(
    tmp_path: Path,
) -> None:
    wf = workflow(_many(450, 300), max_concurrency=64)

    @wf.agent(input=SearchIn, output=Done, name="a", retry=FAST)
    async def agent(inp: SearchIn, ctx: AgentContext) -> Done:
        raise PermanentError("no")

    async with open_store(tmp_path / "runs.db", max_event_bytes=LIMIT) as store:
        run = await Orchestrator(store).start(wf, Goal())

        assert run.status == "waiting", run.reason
        assert len(run.state.escalations) == 450
        log = await read_log(store, run.run_id)
        [waiting] = of(log, ev.RunWaiting)
        assert "and 430 more" in waiting.reason
        _fits(log)
        again = await Orchestrator(store).resume(run.run_id, wf)
        assert again.status == "waiting"
        assert (await verify_run(store, run.run_id, workflow=wf)).ok


async def test_resume_with_hundreds_of_lost_attempts_is_not_stranded(tmp_path: Path) -> None:
    """Side-effecting attempts lost in a crash: one RunResumed names them, within the limit."""
    n = 450
    wf = workflow(_many(n, 300), max_concurrency=n)
    started = 0
    all_started = asyncio.Event()

    @wf.agent(input=SearchIn, output=Done, name="a", side_effect=True)
    async def agent(inp: SearchIn, ctx: AgentContext) -> Done:
        nonlocal started
        started += 1
        if started == n:
            all_started.set()
        await asyncio.sleep(3600)
        return Done()

    async with open_store(tmp_path / "runs.db", max_event_bytes=LIMIT) as store:
        first = asyncio.create_task(Orchestrator(store).start(wf, Goal(), run_id="lost"))
        await all_started.wait()
        first.cancel()  # the process dies with every attempt in flight
        await asyncio.gather(first, return_exceptions=True)

        run = await Orchestrator(store).resume("lost", wf)

        assert run.status == "waiting", run.reason
        log = await read_log(store, "lost")
        [resumed] = of(log, ev.RunResumed)
        assert f"{n:,} attempt(s) had no recorded outcome" in resumed.reason
        assert "and 430 more" in resumed.reason
        assert len(of(log, ev.TaskEscalated)) == n
        _fits(log)
        assert (await verify_run(store, "lost", workflow=wf)).ok


def test_an_event_that_fits_is_never_changed() -> None:
    """Logs written before the bound decide the same: only an unloggable event is cut."""
    state = RunState(run_id="r", max_event_bytes=LIMIT)
    names = [f"t{i}" for i in range(40)]
    small = ev.RunWaiting(escalations=names, reason="x " * 1000)
    assert fitted(state, small) is small
    big = ev.RunWaiting(escalations=names, reason="x" * (2 * LIMIT))
    cut = fitted(state, big)
    assert not over_the_limit(cut, LIMIT)
    assert fitted(state, big) == cut  # the same facts cut the same way
