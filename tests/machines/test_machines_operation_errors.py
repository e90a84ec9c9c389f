"""What start and cancel say when the run is not where the caller thinks.

Before: ``start`` with the id of an existing run raised ConcurrencyError
("another writer appended first"); a cancel from the same orchestrator while
its ``start`` was still in its prelude (lease taken, no driver yet) was
refused as "driven by another live process" (itself), and that refusal
always suggested ``ledgerflow resume --wait``, even for cancel and resolve.
Real SQLite files throughout.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from machines_helpers import Goal, SearchIn, read_log, workflow
from pydantic import BaseModel

from ledgerflow.contracts import Task
from ledgerflow.eventstore import EventStore
from ledgerflow.machines import AgentContext, Orchestrator
from ledgerflow.machines import events as ev
from ledgerflow.machines.errors import RunBusyError, RunExistsError
from ledgerflow.replay.verify import verify_run


class Out(BaseModel):
    ok: bool = True


def _slow(running: asyncio.Event | None = None) -> Any:
    wf = workflow([Task(id="a", agent="a", inputs={"city": "$goal.city"})])

    @wf.agent(input=SearchIn, output=Out, name="a")
    async def agent(inp: SearchIn, ctx: AgentContext) -> Out:
        if running is not None:
            running.set()
        await asyncio.sleep(3600)
        return Out()

    return wf


async def test_start_with_an_existing_run_id_says_the_run_exists(store: EventStore) -> None:
    wf = workflow([])
    await Orchestrator(store).start(wf, Goal(), run_id="O")
    before = await store.last_seq("O")

    with pytest.raises(RunExistsError, match="A run 'O' already exists") as caught:
        await Orchestrator(store).start(wf, Goal(), run_id="O")

    assert caught.value.run_id == "O"
    assert await store.last_seq("O") == before


async def test_cancel_while_our_own_start_is_in_its_prelude_cancels_in_place(
    store: EventStore,
) -> None:
    wf = _slow()
    orch = Orchestrator(store)
    started = asyncio.create_task(orch.start(wf, Goal(), run_id="C2"))
    await asyncio.sleep(0)  # start has reserved the run, not yet bound a driver

    cancelled = await orch.cancel("C2", by="me")
    run = await started

    assert cancelled.status == "cancelled"
    assert run.status == "cancelled"
    assert [e for e in await read_log(store, "C2") if isinstance(e, ev.RunCancelled)]
    assert (await verify_run(store, "C2", workflow=wf)).ok


async def test_busy_cancel_suggests_waiting_through_the_api_not_resume(
    store: EventStore,
) -> None:
    running = asyncio.Event()
    wf = _slow(running)
    orch = Orchestrator(store)
    started = asyncio.create_task(orch.start(wf, Goal(), run_id="C3"))
    await running.wait()

    with pytest.raises(RunBusyError) as caught:
        await Orchestrator(store).cancel("C3")

    assert "resume --wait" not in str(caught.value)
    assert "cancel with Orchestrator(store, lease_wait_s=...)" in str(caught.value)
    assert caught.value.operation == "cancel"
    await orch.cancel("C3")
    await started
