"""The failure stories of "The Orchestrator Trap", each read back from the event log.

Every test drives a real run against a SQLite store in ``tmp_path`` and
asserts on what the log records, not on the runtime's internals.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from machines_helpers import (
    BOOK,
    FAST,
    SEARCH,
    BookIn,
    BookOut,
    Goal,
    SearchIn,
    SearchOut,
    TextOut,
    add_booking,
    assert_fold_matches,
    dispatched_tasks,
    of,
    read_log,
    workflow,
)

from ledgerflow import machines
from ledgerflow.contracts import Task
from ledgerflow.eventstore import EventStore
from ledgerflow.machines import events as ev
from ledgerflow.machines.workflow import Resolution


def _search_agent(wf: machines.Workflow, behave: Any, **options: Any) -> list[int]:
    """Register ``search`` acting out ``behave(attempt)``; returns the attempts it saw."""
    attempts: list[int] = []
    options.setdefault("retry", FAST)

    @wf.agent(input=SearchIn, output=SearchOut, name="search", **options)
    async def search(inp: SearchIn, ctx: machines.AgentContext) -> Any:
        attempts.append(ctx.attempt)
        return await behave(ctx)

    return attempts


async def test_hallucinated_output_retried_then_escalated_never_passed_on(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    hallucination = {"price": "about 120 a night, give or take"}

    async def behave(ctx: machines.AgentContext) -> Any:
        return hallucination

    wf = workflow([SEARCH, BOOK])
    attempts = _search_agent(wf, behave)
    add_booking(wf)
    run = await orch.start(wf, Goal())
    log = await read_log(store, run.run_id)

    assert attempts == [1, 2, 3]
    rejected = of(log, ev.OutputRejected, "search")
    assert [r.attempt for r in rejected] == [1, 2, 3]
    assert all(r.errors and not r.low_confidence for r in rejected)
    assert [r.next_attempt for r in of(log, ev.RetryScheduled, "search")] == [2, 3]
    [escalated] = of(log, ev.TaskEscalated)
    assert (escalated.task_id, escalated.kind) == ("search", "invalid_output")
    assert escalated.candidate == hallucination
    assert "attempt 3 of 3" in escalated.reason
    assert not of(log, ev.OutputAccepted)
    # Never passed on: book is never dispatched, and the value appears in no input.
    assert dispatched_tasks(log) == ["search"] * 3
    for dispatched in of(log, ev.TaskDispatched):
        assert "about 120" not in json.dumps(dispatched.input)
    assert run.status == "waiting"
    assert run.escalations == ["search"]
    assert run.state.task("book").status is machines.TaskStatus.PENDING
    await assert_fold_matches(store, run.run_id, run.state)


async def test_retries_bounded_per_task(orch: machines.Orchestrator, store: EventStore) -> None:
    async def behave(ctx: machines.AgentContext) -> Any:
        raise ConnectionError("upstream reset")

    wf = workflow([SEARCH, BOOK])
    attempts = _search_agent(
        wf, behave, retry=machines.RetryPolicy(max_attempts=4, backoff_s=0.0))
    add_booking(wf)
    run = await orch.start(wf, Goal())
    log = await read_log(store, run.run_id)

    assert attempts == [1, 2, 3, 4]
    failed = of(log, ev.AgentFailed, "search")
    assert [f.attempt for f in failed] == [1, 2, 3, 4]
    assert {f.error_type for f in failed} == {"builtins.ConnectionError"}
    assert len(of(log, ev.RetryScheduled)) == 3
    assert [d.attempt for d in of(log, ev.TaskDispatched)] == [1, 2, 3, 4]
    [escalated] = of(log, ev.TaskEscalated)
    assert escalated.kind == "agent_error"
    assert run.state.retries_used == 3
    assert run.status == "waiting"


async def test_retries_bounded_per_run_no_fan_out_storm(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    fan_out = [Task(id=f"t{i:02d}", agent="search", inputs={"city": "$goal.city"})
               for i in range(20)]
    calls: list[str] = []

    async def behave(ctx: machines.AgentContext) -> Any:
        calls.append(ctx.task_id)
        raise TimeoutError("the flight API is rate limiting us")

    wf = workflow(fan_out, budget=machines.Budget(max_retries=5), max_concurrency=20)
    _search_agent(wf, behave)
    run = await orch.start(wf, Goal())
    log = await read_log(store, run.run_id)

    assert len(of(log, ev.RetryScheduled)) == 5
    [exhausted] = of(log, ev.BudgetExhausted)
    assert (exhausted.kind, exhausted.limit, exhausted.spent) == ("max_retries", 5, 5)
    at = log.index(exhausted)
    last_retry = max(i for i, e in enumerate(log) if isinstance(e, ev.RetryScheduled))
    assert last_retry < at
    # Nothing is dispatched once the budget is gone.
    assert not [e for e in log[at:] if isinstance(e, ev.TaskDispatched)]
    assert len(of(log, ev.TaskDispatched)) == len(calls) <= 20 + 5
    assert {e.task_id for e in of(log, ev.TaskEscalated)} == {t.id for t in fan_out}
    assert run.status == "waiting"
    assert sorted(run.escalations) == [t.id for t in fan_out]
    assert run.state.retries_used == 5


async def test_side_effect_not_repeated_after_failure(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    acted: list[str] = []
    wf = workflow([Task(id="book", agent="book", inputs={"city": "$goal.city", "price": 99})])

    @wf.agent(input=BookIn, output=BookOut, name="book", side_effect=True, retry=FAST)
    async def book(inp: BookIn, ctx: machines.AgentContext) -> BookOut:
        acted.append(ctx.idempotency_key)  # the booking was made...
        raise ConnectionError("connection lost before the confirmation came back")

    run = await orch.start(wf, Goal())
    log = await read_log(store, run.run_id)

    assert len(acted) == 1
    assert len(of(log, ev.TaskDispatched)) == 1
    assert not of(log, ev.RetryScheduled)
    [escalated] = of(log, ev.TaskEscalated)
    assert escalated.task_id == "book"
    assert "side effects and is not idempotent" in escalated.reason
    assert run.status == "waiting"


async def test_side_effect_with_invalid_output_not_repeated(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    acted: list[int] = []
    wf = workflow([Task(id="book", agent="book", inputs={"city": "$goal.city", "price": 99})])

    @wf.agent(input=BookIn, output=BookOut, name="book", side_effect=True, retry=FAST)
    async def book(inp: BookIn, ctx: machines.AgentContext) -> Any:
        acted.append(ctx.attempt)
        return {"reference": "TRV-1"}  # wrong field name: invalid, but it did book

    run = await orch.start(wf, Goal())
    log = await read_log(store, run.run_id)
    assert acted == [1]
    assert len(of(log, ev.TaskDispatched)) == 1
    assert of(log, ev.TaskEscalated)[0].kind == "invalid_output"


async def test_idempotent_side_effect_retried_with_same_key(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    keys: list[str] = []
    wf = workflow([Task(id="book", agent="book", inputs={"city": "$goal.city", "price": 99})])

    @wf.agent(input=BookIn, output=BookOut, name="book", side_effect=True, idempotent=True,
              retry=FAST)
    async def book(inp: BookIn, ctx: machines.AgentContext) -> BookOut:
        keys.append(ctx.idempotency_key)
        if ctx.attempt < 3:
            raise ConnectionError("gateway timeout")
        return BookOut(ref="TRV-0001")

    run = await orch.start(wf, Goal())
    log = await read_log(store, run.run_id)

    dispatched = of(log, ev.TaskDispatched)
    assert [d.attempt for d in dispatched] == [1, 2, 3]
    expected = machines.idempotency_key(run.run_id, "book")
    assert {d.idempotency_key for d in dispatched} == {expected}
    assert keys == [expected] * 3
    assert run.status == "completed"
    assert run.outputs["book"] == BookOut(ref="TRV-0001")


async def test_stalled_agent_times_out(orch: machines.Orchestrator, store: EventStore) -> None:
    async def behave(ctx: machines.AgentContext) -> Any:
        if ctx.attempt == 1:
            await asyncio.Event().wait()  # stalls forever
        return SearchOut(price=120.0)

    wf = workflow([SEARCH, BOOK])
    attempts = _search_agent(wf, behave, timeout_s=0.05)
    add_booking(wf)
    run = await asyncio.wait_for(orch.start(wf, Goal()), timeout=10)
    log = await read_log(store, run.run_id)

    assert attempts == [1, 2]
    [failed] = of(log, ev.AgentFailed)
    assert failed.timed_out
    assert failed.error_type == "builtins.TimeoutError"
    assert (failed.task_id, failed.attempt) == ("search", 1)
    assert "timed out" in failed.reason
    after = log[log.index(failed) + 1]
    assert isinstance(after, ev.RetryScheduled)
    assert after.next_attempt == 2
    assert run.status == "completed"


async def test_low_confidence_output_escalated(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    async def behave(ctx: machines.AgentContext) -> Any:
        return SearchOut(price=131.0, confidence=0.4)

    wf = workflow([SEARCH, BOOK])
    attempts = _search_agent(wf, behave, min_confidence=0.8)
    add_booking(wf)
    run = await orch.start(wf, Goal())
    log = await read_log(store, run.run_id)

    assert attempts == [1]  # low confidence is not retried by default
    [rejected] = of(log, ev.OutputRejected)
    assert rejected.low_confidence
    assert rejected.confidence == 0.4
    [escalated] = of(log, ev.TaskEscalated)
    assert escalated.kind == "low_confidence"
    assert escalated.candidate == {"price": 131.0, "confidence": 0.4}
    assert dispatched_tasks(log) == ["search"]
    assert isinstance(log[-1], ev.RunWaiting)
    assert log[-1].escalations == ["search"]
    assert run.status == "waiting"
    assert run.state.escalations["search"].candidate == escalated.candidate
    assert run.state.task("search").output is None


async def test_low_confidence_retried_when_policy_says_so(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    async def behave(ctx: machines.AgentContext) -> Any:
        return SearchOut(price=131.0, confidence=0.4 if ctx.attempt == 1 else 0.9)

    wf = workflow([SEARCH, BOOK])
    attempts = _search_agent(
        wf, behave, min_confidence=0.8,
        retry=machines.RetryPolicy(backoff_s=0.0, retry_low_confidence=True))
    add_booking(wf)
    run = await orch.start(wf, Goal())
    assert attempts == [1, 2]
    assert run.status == "completed"


def _low_confidence_once(wf: machines.Workflow) -> list[int]:
    async def behave(ctx: machines.AgentContext) -> Any:
        return SearchOut(price=131.0, confidence=0.4 if ctx.attempt == 1 else 0.95)

    return _search_agent(wf, behave, min_confidence=0.8)


async def test_escalation_resolved_and_run_completes(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    wf = workflow([SEARCH, BOOK])
    _low_confidence_once(wf)
    add_booking(wf)
    run = await orch.start(wf, Goal())
    assert run.status == "waiting"
    assert run.escalations == ["search"]
    run_id = run.run_id

    before = await store.last_seq(run_id)
    with pytest.raises(machines.ResolutionError, match="does not satisfy SearchOut"):
        await orch.resolve(run_id, "search", output={"price": -5}, workflow=wf)
    with pytest.raises(machines.ResolutionError, match="not escalated"):
        await orch.resolve(run_id, "book", output={"ref": "x"}, workflow=wf)
    with pytest.raises(machines.ResolutionError, match="no task 'nope'"):
        await orch.resolve(run_id, "nope", abandon=True, workflow=wf)
    with pytest.raises(machines.ResolutionError, match="exactly one"):
        await orch.resolve(run_id, "search", retry=True, abandon=True, workflow=wf)
    assert await store.last_seq(run_id) == before

    done = await orch.resolve(run_id, "search", output=SearchOut(price=140.0, confidence=1.0),
                              by="alice", note="checked the fare by phone", workflow=wf)
    assert done.status == "completed"
    log = await read_log(store, run_id)
    [resolved] = of(log, ev.EscalationResolved)
    assert (resolved.action, resolved.by, resolved.output) == (
        "output", "alice", {"price": 140.0, "confidence": 1.0})
    assert (resolved.src, resolved.dst) == ("waiting", "running")
    assert "checked the fare by phone" in resolved.reason
    assert of(log, ev.TaskDispatched, "book")[0].input == {"city": "Lisbon", "price": 140.0}
    assert done.outputs["book"] == BookOut(ref="B-140")
    assert done.state.task("search").resolved_by == "alice"

    with pytest.raises(machines.ResolutionError, match="not escalated"):
        await orch.resolve(run_id, "search", retry=True, workflow=wf)
    await assert_fold_matches(store, run_id, done.state)


async def test_escalation_resolved_with_retry_redispatches(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    wf = workflow([SEARCH, BOOK])
    attempts = _low_confidence_once(wf)
    add_booking(wf)
    run = await orch.start(wf, Goal())
    assert run.status == "waiting"

    done = await orch.resolve(run.run_id, "search", retry=True, workflow=wf)
    log = await read_log(store, run.run_id)
    assert attempts == [1, 2]
    search = of(log, ev.TaskDispatched, "search")
    assert [d.attempt for d in search] == [1, 2]
    assert search[1].reason == "Retry granted by api."
    assert done.status == "completed"
    assert of(log, ev.TaskDispatched, "book")[0].input["price"] == 131.0
    await assert_fold_matches(store, run.run_id, done.state)


async def test_escalation_handler_settles_at_once(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    wf = workflow([SEARCH, BOOK])
    _low_confidence_once(wf)
    add_booking(wf)

    @wf.on_escalation
    async def reviewer(req: machines.EscalationRequest) -> Resolution | None:
        assert req.kind == "low_confidence"
        assert req.input == {"city": "Lisbon"}
        return Resolution.accept(req.candidate, note="fare is plausible")

    run = await orch.start(wf, Goal())
    log = await read_log(store, run.run_id)
    assert run.status == "completed"
    [resolved] = of(log, ev.EscalationResolved)
    assert resolved.by == "handler:reviewer"
    assert of(log, ev.TaskDispatched, "book")[0].input["price"] == 131.0


async def test_abandoned_task_skips_its_dependents(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    # search -> quote -> book (transitively), and an independent task that succeeds.
    plan = [
        SEARCH,
        Task(id="quote", agent="book", needs=["search"],
             inputs={"city": "$goal.city", "price": "$search.price"}),
        Task(id="confirm", agent="book", needs=["quote"],
             inputs={"city": "$quote.ref", "price": 1}),
        Task(id="other", agent="book", inputs={"city": "$goal.city", "price": 5}),
    ]

    async def behave(ctx: machines.AgentContext) -> Any:
        raise machines.PermanentError("no fares exist for this route")

    wf = workflow(plan)
    _search_agent(wf, behave)
    calls: list[str] = []
    add_booking(wf, calls)
    run = await orch.start(wf, Goal())
    assert run.status == "waiting"

    done = await orch.resolve(run.run_id, "search", abandon=True, by="ops", workflow=wf)
    log = await read_log(store, run.run_id)
    assert calls == ["other"]
    assert [e.task_id for e in of(log, ev.TaskAbandoned)] == ["search"]
    skipped = of(log, ev.TaskSkipped)
    assert [(s.task_id, s.because) for s in skipped] == [("quote", "search"), ("confirm", "quote")]
    assert done.status == "failed"
    assert isinstance(log[-1], ev.RunFailed)
    for name in ("search", "quote", "confirm"):
        assert name in done.reason
    assert "other" not in done.reason
    assert set(done.outputs) == {"other"}
    await assert_fold_matches(store, run.run_id, done.state)


async def test_permanent_error_escalates_at_once(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    async def behave(ctx: machines.AgentContext) -> Any:
        raise machines.PermanentError("no fares exist for this route")

    wf = workflow([SEARCH, BOOK])
    attempts = _search_agent(wf, behave, retry=machines.RetryPolicy(max_attempts=5))
    add_booking(wf)
    run = await orch.start(wf, Goal())
    log = await read_log(store, run.run_id)

    assert attempts == [1]
    [failed] = of(log, ev.AgentFailed)
    assert failed.error_type == "ledgerflow.PermanentError"  # its stable name
    assert "ledgerflow.LedgerflowError" in failed.error_types
    assert failed.message == "no fares exist for this route"
    assert not of(log, ev.RetryScheduled)
    [escalated] = of(log, ev.TaskEscalated)
    assert escalated.kind == "permanent_error"
    assert run.status == "waiting"


async def test_budget_max_cost_stops_dispatching(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    plan = [Task(id=f"s{i}", agent="search", needs=[f"s{i - 1}"] if i else [],
                 inputs={"city": "$goal.city"}) for i in range(4)]

    async def behave(ctx: machines.AgentContext) -> Any:
        ctx.record_usage(tokens=1000, cost=0.6)
        return SearchOut(price=100.0)

    wf = workflow(plan, budget=machines.Budget(max_cost=1.0))
    attempts = _search_agent(wf, behave)
    run = await orch.start(wf, Goal())
    log = await read_log(store, run.run_id)

    assert attempts == [1, 1]
    [exhausted] = of(log, ev.BudgetExhausted)
    assert exhausted.kind == "max_cost"
    assert exhausted.limit == 1.0
    assert exhausted.spent == pytest.approx(1.2)
    assert dispatched_tasks(log) == ["s0", "s1"]
    assert not [e for e in log[log.index(exhausted):] if isinstance(e, ev.TaskDispatched)]
    [escalated] = of(log, ev.TaskEscalated)
    assert (escalated.task_id, escalated.kind) == ("s2", "budget")
    assert run.state.cost == pytest.approx(1.2)
    assert run.state.tokens == 2000
    assert run.status == "waiting"


async def test_oversized_output_is_an_error_event_not_a_huge_row(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    wf = workflow([Task(id="dump", agent="dump", inputs={"city": "$goal.city"})])

    @wf.agent(input=SearchIn, output=TextOut, name="dump", retry=FAST)
    async def dump(inp: SearchIn, ctx: machines.AgentContext) -> TextOut:
        return TextOut(text="x" * 3_000_000)

    run = await orch.start(wf, Goal())
    envelopes = await store.read_all(run.run_id)
    assert max(len(env.data) for env in envelopes) <= store.max_event_bytes
    log = [machines.decode_event(env.data) for env in envelopes]
    failed = of(log, ev.AgentFailed)
    assert failed
    assert {f.error_type for f in failed} == {"ledgerflow.OutputTooLarge"}
    assert "bytes" in failed[0].message
    assert not of(log, ev.OutputReceived)
    assert run.status != "completed"


async def test_concurrency_limit_respected(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    running = 0
    peak = 0

    async def behave(ctx: machines.AgentContext) -> Any:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(0.005)
            if ctx.attempt == 1 and ctx.task_id.endswith(("1", "4")):
                raise ConnectionError("flaky")
        finally:
            running -= 1
        return SearchOut(price=10.0)

    plan = [Task(id=f"t{i}", agent="search", inputs={"city": "$goal.city"}) for i in range(12)]
    wf = workflow(plan, max_concurrency=3)
    _search_agent(wf, behave)
    run = await orch.start(wf, Goal())
    assert run.status == "completed"
    assert peak == 3
    # The log agrees: never more than 3 tasks hold a slot after any event.
    state = machines.RunState(run_id=run.run_id)
    for event in await read_log(store, run.run_id):
        machines.evolve(state, event)
        assert state.in_flight <= 3


async def test_budget_deadline_stops_dispatching(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    plan = [Task(id=f"s{i}", agent="search", needs=[f"s{i - 1}"] if i else [],
                 inputs={"city": "$goal.city"}) for i in range(5)]

    async def behave(ctx: machines.AgentContext) -> Any:
        await asyncio.sleep(0.04)
        return SearchOut(price=100.0)

    wf = workflow(plan, budget=machines.Budget(deadline_s=0.05))
    _search_agent(wf, behave)
    run = await asyncio.wait_for(orch.start(wf, Goal()), timeout=10)
    log = await read_log(store, run.run_id)

    [passed] = of(log, ev.DeadlinePassed)
    assert passed.reason
    [exhausted] = of(log, ev.BudgetExhausted)
    assert exhausted.kind == "deadline"
    at = log.index(exhausted)
    assert not [e for e in log[at:] if isinstance(e, ev.TaskDispatched)]
    [escalated] = of(log, ev.TaskEscalated)
    assert escalated.kind == "budget"
    assert run.status == "waiting"
    assert run.state.budget_exhausted == "deadline"
