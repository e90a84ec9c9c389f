"""A fork family books a non-idempotent side effect once, whichever member gets there first.

Before: a fork consulted only its origin chain, and an origin never learned
of its forks, so two forks of a waiting run (or the origin resolved after its
fork) each booked under the shared idempotency key. Now each member claims
the (key, attempt) in the store before acting; the others are served the
holder's outcome or escalate. The sink counts bookings by idempotency key.
Real SQLite files, and the real PostgreSQL server for the concurrent story.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import EventStore, open_store
from ledgerflow.machines import (
    AgentContext,
    Orchestrator,
    PermanentError,
    RunResult,
    Worker,
    Workflow,
    decode_event,
)
from ledgerflow.machines import events as ev
from ledgerflow.machines.stable_names import SIDE_EFFECT_INPUT_CHANGED, SIDE_EFFECT_OUTCOME_UNKNOWN
from ledgerflow.replay.fork import fork_run
from ledgerflow.replay.verify import verify_run


class Goal(BaseModel):
    city: str = "Lisbon"


class CheckIn(BaseModel):
    city: str


class CheckOut(BaseModel):
    price: float


class BookIn(BaseModel):
    city: str
    price: float


class BookOut(BaseModel):
    ref: str


class Sink:
    """Where bookings land; ``crash`` is set to the drive a booking kills before it books."""

    def __init__(self) -> None:
        self.by_key: Counter[str] = Counter()
        self.by_run: Counter[str] = Counter()
        self.crash: asyncio.Task[RunResult] | None = None
        self.booking = asyncio.Event()
        self.booking.set()


def travel(sink: Sink, *, idempotent: bool = False) -> Workflow:
    """``check`` always needs a person (the run waits); ``book`` books with its price."""
    wf = Workflow("fork-family", goal=Goal)

    @wf.planner
    async def planner(goal: Goal, ctx: AgentContext) -> Plan:
        return Plan(tasks=[
            Task(id="check", agent="check", inputs={"city": "$goal.city"}),
            Task(id="book", agent="book", needs=["check"],
                 inputs={"city": "$goal.city", "price": "$check.price"}),
        ])

    @wf.agent(input=CheckIn, output=CheckOut, name="check")
    async def check(inp: CheckIn, ctx: AgentContext) -> CheckOut:
        raise PermanentError("the fare needs a person's approval")

    @wf.agent(input=BookIn, output=BookOut, name="book", side_effect=True,
              idempotent=idempotent)
    async def book(inp: BookIn, ctx: AgentContext) -> BookOut:
        if sink.crash is not None:
            sink.crash.cancel()  # the process dies after the claim, before the booking
            await asyncio.sleep(30)
        await sink.booking.wait()
        sink.by_key[ctx.idempotency_key] += 1
        sink.by_run[ctx.run_id] += 1
        return BookOut(ref=f"B-{ctx.run_id}-{inp.price:g}")

    return wf


async def _log(store: EventStore, run_id: str) -> list[ev.Event]:
    return [decode_event(env.data) for env in await store.read_all(run_id)]


async def _waiting_origin(store: EventStore, wf: Workflow) -> int:
    run = await Orchestrator(store).start(wf, Goal(), run_id="origin")
    assert run.status == "waiting"
    assert run.escalations == ["check"]
    return await store.last_seq("origin")


async def _approve(store: EventStore, wf: Workflow, run_id: str, price: float) -> RunResult:
    return await Orchestrator(store).resolve(run_id, "check", workflow=wf,
                                             output={"price": price})


def _failures(log: list[ev.Event]) -> list[ev.AgentFailed]:
    return [e for e in log if isinstance(e, ev.AgentFailed) and e.task_id == "book"]


async def test_two_sibling_forks_book_once_and_the_second_is_served_the_firsts_booking(
    tmp_path: Path,
) -> None:
    sink = Sink()
    wf = travel(sink)
    async with open_store(tmp_path / "runs.db") as store:
        at = await _waiting_origin(store, wf)
        for fork in ("fork-a", "fork-b"):
            await fork_run(store, "origin", at_seq=at, workflow=wf, new_run_id=fork)
            assert (await _approve(store, wf, fork, 100.0)).status == "completed"

        assert list(sink.by_key.values()) == [1]
        assert sink.by_run == {"fork-a": 1}
        b = await Orchestrator(store).resume("fork-b", wf)  # a completed run, read back
        assert b.outputs["book"] == BookOut(ref="B-fork-a-100")
        [served] = [e for e in await _log(store, "fork-b") if isinstance(e, ev.OutputReceived)]
        assert served.reason.startswith("Reused the outcome run 'fork-a' recorded at seq")
        [claim] = await store.effect_claims()
        assert (claim.run_id, claim.task_id, claim.attempt) == ("fork-a", "book", 1)
        for run_id in ("origin", "fork-a", "fork-b"):
            assert (await verify_run(store, run_id, workflow=wf)).ok


async def test_an_origin_resolved_after_its_fork_is_served_the_forks_booking(
    tmp_path: Path,
) -> None:
    sink = Sink()
    wf = travel(sink)
    async with open_store(tmp_path / "runs.db") as store:
        at = await _waiting_origin(store, wf)
        await fork_run(store, "origin", at_seq=at, workflow=wf, new_run_id="fork")
        assert (await _approve(store, wf, "fork", 100.0)).status == "completed"
        origin = await _approve(store, wf, "origin", 100.0)

        assert origin.status == "completed", origin.reason
        assert origin.outputs["book"] == BookOut(ref="B-fork-100")
        assert sink.by_run == {"fork": 1}
        assert (await verify_run(store, "origin", workflow=wf)).ok


async def test_an_origin_resolved_with_another_price_after_its_fork_escalates(
    tmp_path: Path,
) -> None:
    sink = Sink()
    wf = travel(sink)
    async with open_store(tmp_path / "runs.db") as store:
        at = await _waiting_origin(store, wf)
        await fork_run(store, "origin", at_seq=at, workflow=wf, new_run_id="fork")
        await _approve(store, wf, "fork", 100.0)
        origin = await _approve(store, wf, "origin", 120.0)

        assert origin.status == "waiting"
        assert origin.escalations == ["book"]
        [failed] = _failures(await _log(store, "origin"))
        assert failed.error_type == SIDE_EFFECT_INPUT_CHANGED
        assert "run 'fork' already performed this side effect" in failed.message
        assert sink.by_run == {"fork": 1}


async def test_a_crash_between_claim_and_booking_never_lets_a_sibling_book(
    tmp_path: Path,
) -> None:
    sink = Sink()
    wf = travel(sink)
    async with open_store(tmp_path / "runs.db") as store:
        at = await _waiting_origin(store, wf)
        for fork in ("fork-a", "fork-b"):
            await fork_run(store, "origin", at_seq=at, workflow=wf, new_run_id=fork)
        dying = asyncio.create_task(_approve(store, wf, "fork-a", 100.0))
        sink.crash = dying
        with pytest.raises(asyncio.CancelledError):
            await dying
        sink.crash = None
        [claim] = await store.effect_claims()
        assert (claim.run_id, sink.by_key.total()) == ("fork-a", 0)  # claimed, never booked

        b = await _approve(store, wf, "fork-b", 100.0)
        assert b.status == "waiting"
        [failed] = _failures(await _log(store, "fork-b"))
        assert failed.error_type == SIDE_EFFECT_OUTCOME_UNKNOWN
        assert "run 'fork-a' dispatched this side effect" in failed.message
        # fork-a itself, resumed, knows the booking's outcome is unknown: not booked either.
        a = await Orchestrator(store, lease_ttl_s=0.5).resume("fork-a", wf)
        assert a.status == "waiting"
        assert a.escalations == ["book"]
        assert sink.by_key.total() == 0
        assert await store.effect_claims() == [claim]


async def test_a_repeat_side_effects_fork_books_again_only_when_its_input_changed(
    tmp_path: Path,
) -> None:
    sink = Sink()
    wf = travel(sink)
    async with open_store(tmp_path / "runs.db") as store:
        at = await _waiting_origin(store, wf)
        await fork_run(store, "origin", at_seq=at, workflow=wf, new_run_id="first")
        await _approve(store, wf, "first", 100.0)
        forks = {"again": (120.0, True), "same": (100.0, True), "careful": (120.0, False)}
        results: dict[str, RunResult] = {}
        for fork, (price, repeat) in forks.items():
            await fork_run(store, "origin", at_seq=at, workflow=wf, new_run_id=fork,
                           repeat_side_effects=repeat)
            results[fork] = await _approve(store, wf, fork, price)

        # On purpose: a new price under the shared key; the same price is served, not booked.
        assert sink.by_run == {"first": 1, "again": 1}
        assert list(sink.by_key.values()) == [2]
        assert results["again"].outputs["book"] == BookOut(ref="B-again-120")
        assert results["same"].outputs["book"] == BookOut(ref="B-first-100")
        assert results["careful"].status == "waiting"
        [refused] = _failures(await _log(store, "careful"))
        assert refused.error_type == SIDE_EFFECT_INPUT_CHANGED


async def test_a_run_without_forks_and_idempotent_bookings_take_no_claim(
    tmp_path: Path,
) -> None:
    sink = Sink()
    async with open_store(tmp_path / "runs.db") as store:
        plain = travel(sink)
        run = await Orchestrator(store).start(plain, Goal(), run_id="alone")
        assert (await _approve(store, plain, run.run_id, 100.0)).status == "completed"
        assert not await store.has_fork_family("alone")
        idempotent = travel(sink, idempotent=True)
        at = await _waiting_origin(store, idempotent)
        for fork in ("fork-a", "fork-b"):
            await fork_run(store, "origin", at_seq=at, workflow=idempotent, new_run_id=fork)
            await _approve(store, idempotent, fork, 100.0)

        assert await store.effect_claims() == []
        # The idempotent sink dedupes on the key both forks share.
        assert sink.by_run == {"alone": 1, "fork-a": 1, "fork-b": 1}
        assert sorted(sink.by_key.values()) == [1, 2]


# -- concurrent members, on both backends ---------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database every member opens on its own, as separate processes would."""
    if request.param == "sqlite":
        yield str(tmp_path / "runs.db")
        return
    dsn = os.environ.get("LEDGERFLOW_TEST_PG_DSN", "")
    if not dsn:
        pytest.skip("PostgreSQL tests need LEDGERFLOW_TEST_PG_DSN")
    schema = f"rlt_{uuid.uuid4().hex[:12]}_family"
    try:
        yield f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"
    finally:
        import asyncpg  # noqa: PLC0415 - only the PostgreSQL param needs it

        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


async def test_forks_approved_at_the_same_moment_book_once(store_url: str) -> None:
    sink = Sink()
    wf = travel(sink)
    forks = [f"fork-{n}" for n in range(4)]
    async with open_store(store_url) as store:
        at = await _waiting_origin(store, wf)
        for fork in forks:
            await fork_run(store, "origin", at_seq=at, workflow=wf, new_run_id=fork)
    sink.booking.clear()  # the winner stays in flight until every member has tried

    async def member(run_id: str) -> RunResult:
        async with open_store(store_url) as own:
            return await _approve(own, wf, run_id, 100.0)

    members = [asyncio.create_task(member(r)) for r in ["origin", *forks]]
    pending = set(members)
    while len(pending) > 1:  # every member but the one holding the claim comes to rest
        _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    sink.booking.set()
    results = await asyncio.gather(*members)
    async with open_store(store_url) as store:
        assert sink.by_key.total() == 1
        [claim] = await store.effect_claims()
        assert sink.by_run == {claim.run_id: 1}
        # The performer completed; every other member saw it in flight: "outcome unknown".
        for result in results:
            if result.run_id == claim.run_id:
                assert result.status == "completed"
                continue
            assert result.status == "waiting", result.reason
            [failed] = _failures(await _log(store, result.run_id))
            assert failed.error_type == SIDE_EFFECT_OUTCOME_UNKNOWN


# -- a member whose bookings run on the worker pool ------------------------------------------


async def test_an_origin_whose_booking_runs_on_the_pool_is_served_its_forks_booking(
    tmp_path: Path,
) -> None:
    sink = Sink()
    wf = travel(sink)
    db = tmp_path / "runs.db"
    async with open_store(db) as store, open_store(db) as pool:
        at = await _waiting_origin(store, wf)
        await fork_run(store, "origin", at_seq=at, workflow=wf, new_run_id="fork")
        await _approve(store, wf, "fork", 100.0)
        worker = Worker(pool, [wf], lease_ttl_s=5, poll_s=0.01)
        serving = asyncio.create_task(worker.run())
        try:
            # The origin's owner offers the booking to the pool; a worker runs it.
            origin = await Orchestrator(store, spread_tasks=True).resolve(
                "origin", "check", workflow=wf, output={"price": 100.0})
        finally:
            worker.stop()
            await serving
        assert worker.stats.tasks == 1
        assert sink.by_run == {"fork": 1}
        assert origin.outputs["book"] == BookOut(ref="B-fork-100")
