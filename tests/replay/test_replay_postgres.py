"""The whole loop on PostgreSQL, the multi-worker backend: a run driven by one
worker, resolved by another, refused to a third while leased, and verified."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest

from ledgerflow.eventstore import open_store
from ledgerflow.examples import travel, travel_unreviewed
from ledgerflow.machines import Orchestrator, RunBusyError, idempotency_key
from ledgerflow.replay.fork import fork_run
from ledgerflow.replay.verify import verify_run

PG_DSN = os.environ.get("LEDGERFLOW_TEST_PG_DSN", "")
pytestmark = pytest.mark.skipif(
    not PG_DSN, reason="PostgreSQL tests need LEDGERFLOW_TEST_PG_DSN "
    "(e.g. postgresql://postgres@127.0.0.1:5432/test)")


@pytest.fixture
async def url() -> AsyncIterator[str]:
    import asyncpg  # noqa: PLC0415 - only these tests need it

    schema = f"rlt_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in PG_DSN else "?"
    yield f"{PG_DSN}{sep}schema={schema}"
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


GOAL = travel.TripGoal(destination="Lisbon", passengers=2)


async def test_demo_runs_and_verifies_on_postgres(url: str) -> None:
    async with open_store(url) as store:
        run = await Orchestrator(store).start(travel.wf, GOAL)
        assert run.status == "completed"
        assert travel.BOOKING_CALLS.count(idempotency_key(run.run_id, "book")) == 1
        report = await verify_run(store, run.run_id, workflow=travel.wf)
        assert report.ok, report.lines()
        listed = await store.runs(status="completed")
        assert [r.run_id for r in listed] == [run.run_id]


async def test_one_worker_waits_another_resolves_on_postgres(url: str) -> None:
    async with open_store(url) as first:
        waiting = await Orchestrator(first).start(travel_unreviewed.wf, GOAL)
    assert waiting.status == "waiting"
    candidate = waiting.state.escalations["price"].candidate
    async with open_store(url) as second:
        done = await Orchestrator(second).resolve(
            waiting.run_id, "price", output=candidate, by="worker-2",
            workflow=travel_unreviewed.wf)
        assert done.status == "completed"
        report = await verify_run(second, waiting.run_id, workflow=travel_unreviewed.wf)
        assert report.ok, report.lines()


async def test_a_leased_run_is_refused_to_another_worker_on_postgres(url: str) -> None:
    async with open_store(url) as first, open_store(url) as second:
        run = await Orchestrator(first).start(travel_unreviewed.wf, GOAL)
        assert await first.try_lease(run.run_id, "worker-1", 30.0)
        with pytest.raises(RunBusyError):
            await Orchestrator(second).resume(run.run_id, travel_unreviewed.wf)


async def test_fork_and_resume_on_postgres(url: str) -> None:
    async with open_store(url) as store:
        run = await Orchestrator(store).start(travel.wf, GOAL)
        fork_id = await fork_run(store, run.run_id, at_seq=24, workflow=travel.wf)
        forked = await Orchestrator(store).resume(fork_id, travel.wf)
        assert forked.status == "completed"
        assert (await verify_run(store, fork_id, workflow=travel.wf)).ok
