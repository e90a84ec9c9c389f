"""The functional core: events, the transition tables, evolve and decide, the public API."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
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
    workflow,
)
from transitions import MachineError

from ledgerflow import machines
from ledgerflow.machines import events as ev
from ledgerflow.machines import fsm

PUBLIC_API = [
    "AgentContext", "AgentSpec", "Budget", "BudgetExhaustedError", "ChainBrokenError",
    "Escalation",
    "EscalationRequest", "Event", "EventTooNewError", "IllegalTransitionError",
    "InvalidRunIdError", "Metered",
    "Orchestrator", "PermanentError", "RecordedStepError", "Recording", "RecordingMissError",
    "Resolution", "ResolutionError", "RetryPolicy", "RunBusyError", "RunExistsError",
    "RunNotFoundError", "RunObserver", "RunResult", "RunState", "RunStatus", "StepMismatchError",
    "StepView",
    "TaskState", "TaskStatus", "UnloggableValueError", "Worker", "Workflow",
    "WorkflowDefinitionError", "WorkflowNameClashError", "WorkflowNotFoundError", "advance",
    "decide", "decode_event", "encode_event", "event_types", "evolve", "find_workflow", "fold",
    "idempotency_key", "load_run_state", "load_workflow", "register", "step_totals", "steps_of",
]


def test_public_api_is_pinned_and_sorted() -> None:
    assert machines.__all__ == PUBLIC_API
    assert sorted(machines.__all__) == machines.__all__
    for name in machines.__all__:
        assert getattr(machines, name) is not None


# -- events ------------------------------------------------------------------

SAMPLES: list[ev.Event] = [
    ev.RunStarted(workflow="travel", workflow_ref="ledgerflow.examples.travel:wf",
                  goal={"city": "Lisbon"},
                  started_at="2026-01-01T00:00:00+00:00", max_concurrency=4, max_retries=10,
                  max_cost=2.5, deadline_s=600.0, reason="r", src="created", dst="planning"),
    ev.PlanProposed(plan={"tasks": [{"id": "a", "agent": "x"}]}, error="oops", reason="r"),
    ev.PlanAccepted(tasks=[ev.PlannedTask(id="a", agent="x", needs=["b"], inputs={"k": "$b.v"})],
                    reason="r", src="planning", dst="running"),
    ev.PlanRejected(problems=[ev.Problem(code="unknown_agent", message="m", task_id="a")],
                    reason="r", src="planning", dst="failed"),
    ev.TaskReady(task_id="a", reason="r", src="pending", dst="ready"),
    ev.TaskDispatched(task_id="a", attempt=2, input={"city": "Lisbon", "n": [1, 2]},
                      idempotency_key="k" * 32, timeout_s=1.5, src="ready", dst="dispatched"),
    ev.OutputReceived(task_id="a", attempt=2, output=["any", {"json": None}], tokens=7,
                      cost=0.25, src="dispatched", dst="validating"),
    ev.AgentFailed(task_id="a", attempt=2, error_type="builtins.TimeoutError",
                   error_types=["builtins.TimeoutError", "builtins.OSError"], message="0.5s",
                   timed_out=True, tokens=3, cost=0.5),
    ev.OutputAccepted(task_id="a", attempt=2, output={"total": 1.5}, confidence=0.9),
    ev.OutputRejected(task_id="a", attempt=2, errors=["total: bad"], confidence=0.1,
                      low_confidence=True),
    ev.RetryScheduled(task_id="a", attempt=2, next_attempt=3, delay_s=0.25,
                      src="validating", dst="retry_wait"),
    ev.TimerFired(task_id="a", reason="Backoff elapsed."),
    ev.TaskEscalated(task_id="a", kind="low_confidence", candidate={"total": 1.5},
                     src="validating", dst="escalated"),
    ev.EscalationResolved(task_id="a", action="output", by="alice", output={"total": 2.0},
                          note="n", src="waiting", dst="running"),
    ev.TaskSucceeded(task_id="a", src="escalated", dst="succeeded"),
    ev.TaskAbandoned(task_id="a", src="escalated", dst="abandoned"),
    ev.TaskSkipped(task_id="b", because="a", src="pending", dst="skipped"),
    ev.BudgetExhausted(kind="max_cost", limit=1.0, spent=1.25),
    ev.DeadlinePassed(deadline_s=60.0),
    ev.RunWaiting(escalations=["a"], src="running", dst="waiting"),
    ev.RunCompleted(reason="done", src="running", dst="completed"),
    ev.RunFailed(reason="failed", src="running", dst="failed"),
    ev.RunCancelled(by="ops", src="running", dst="cancelled"),
    ev.RunResumed(by="host:1", interrupted=["a"]),
    ev.ForkedFrom(origin_run_id="r0", at_seq=12),
    ev.StepStarted(task_id="a", attempt=2, index=0, name="send", request={"args": ["x"],
                   "kwargs": {}}, request_hash="h" * 64),
    ev.StepRecorded(task_id="a", attempt=2, index=1, name="llm", request={"args": [],
                    "kwargs": {"m": 1}}, request_hash="h" * 64, result={"choices": []},
                    error_type="builtins.ValueError", error_types=["builtins.ValueError"],
                    message="m", tokens=12, cost=0.001, duration_ms=3.5,
                    detail={"kind": "llm", "model": "m"}, side_effect=True),
    ev.RunSubmitted(workflow="travel", workflow_ref="ledgerflow.examples.travel:wf",
                    goal={"city": "Lisbon"}, submitted_at="2026-01-01T00:00:00+00:00",
                    src="created", dst="queued"),
    ev.ResolutionRequested(task_id="a", action="retry", by="alice", note="n",
                           src="waiting", dst="queued"),
]


def test_samples_cover_every_event_type() -> None:
    assert [e.type for e in SAMPLES] == machines.event_types()
    assert len(set(machines.event_types())) == len(ev.EVENT_CLASSES)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.type)
def test_every_event_type_round_trips(event: ev.Event) -> None:
    data = machines.encode_event(event)
    assert msgspec.json.decode(data)["type"] == event.type
    back = machines.decode_event(data)
    assert type(back) is type(event)
    assert back == event
    assert machines.decode_event(data.decode()) == event
    assert machines.encode_event(back) == data


def test_decode_rejects_unknown_type_and_bad_field() -> None:
    with pytest.raises(msgspec.ValidationError):
        machines.decode_event(b'{"type":"TaskTeleported","task_id":"a"}')
    with pytest.raises(msgspec.ValidationError, match="attempt"):
        machines.decode_event(b'{"type":"RetryScheduled","task_id":"a","attempt":"two",'
                              b'"next_attempt":3,"delay_s":0}')


def test_events_name_their_machine_and_trigger() -> None:
    dispatched = SAMPLES[5]
    assert (dispatched.machine, dispatched.trigger) == ("task:a", "dispatch")
    assert ev.TaskReady(task_id="a").trigger is None  # no move recorded, no trigger fired
    assert SAMPLES[13].machine == "run"  # EscalationResolved moves the run
    assert SAMPLES[0].trigger == "start"


# -- the transition tables vs transitions ------------------------------------

@pytest.mark.parametrize(
    ("machine", "states", "table"),
    [(fsm.RUN_MACHINE, machines.RunStatus, fsm.RUN_TABLE),
     (fsm.TASK_MACHINE, machines.TaskStatus, fsm.TASK_TABLE)],
    ids=["run", "task"],
)
def test_fsm_table_agrees_with_transitions_for_every_state_and_trigger(
    machine: Any, states: Any, table: dict[Any, Any]
) -> None:
    fresh = copy.deepcopy(machine)  # never add models to the shared machine
    triggers = sorted(fresh.events)
    assert triggers == sorted({trigger for (_, trigger) in table})
    for state in states:
        for trigger in triggers:
            model = type("Model", (), {})()
            fresh.add_model(model, initial=state.value)
            try:
                model.trigger(trigger)
            except MachineError:
                fired = None
            else:
                fired = states(model.state)
            finally:
                fresh.remove_model(model)
            assert table.get((state, trigger)) == fired, (state, trigger)
    assert machine.models == []


def test_tables_match_the_design() -> None:
    r, t = machines.RunStatus, machines.TaskStatus
    assert fsm.RUN_TABLE[(r.RUNNING, "wait")] is r.WAITING
    assert fsm.RUN_TABLE[(r.WAITING, "resume")] is r.RUNNING
    assert (r.COMPLETED, "fail") not in fsm.RUN_TABLE
    assert fsm.TASK_TABLE[(t.VALIDATING, "schedule_retry")] is t.RETRY_WAIT
    assert fsm.TASK_TABLE[(t.ESCALATED, "make_ready")] is t.READY
    assert fsm.TASK_TABLE[(t.PENDING, "skip")] is t.SKIPPED
    assert (t.PENDING, "dispatch") not in fsm.TASK_TABLE
    for status in (t.SUCCEEDED, t.ABANDONED, t.SKIPPED):
        assert status.terminal
        assert not [k for k in fsm.TASK_TABLE if k[0] is status]
    for run_status in (r.COMPLETED, r.FAILED, r.CANCELLED):
        assert run_status.terminal
        assert not [k for k in fsm.RUN_TABLE if k[0] is run_status]


# -- evolve --------------------------------------------------------------------

def _wf() -> machines.Workflow:
    wf = workflow([SEARCH, BOOK])

    @wf.agent(input=SearchIn, output=SearchOut, name="search", retry=FAST, min_confidence=0.5)
    async def search(inp: SearchIn, ctx: machines.AgentContext) -> SearchOut:
        raise AssertionError("never called: these tests only decide")

    @wf.agent(input=BookIn, output=BookOut, name="book", retry=FAST)
    async def book(inp: BookIn, ctx: machines.AgentContext) -> BookOut:
        raise AssertionError("never called")

    return wf


def _planned(wf: machines.Workflow) -> tuple[machines.RunState, list[ev.Event]]:
    """A state decided up to search's first dispatch, with the events that got there."""
    state = machines.RunState(run_id="r1")
    log = machines.advance(state, ev.RunStarted(
        workflow=wf.name, goal=Goal().model_dump(), started_at="2026-01-01T00:00:00+00:00",
        max_concurrency=1), wf)
    log += machines.advance(state, ev.PlanProposed(plan={"tasks": [
        SEARCH.model_dump(), BOOK.model_dump()]}), wf)
    return state, log


def test_decided_log_shape() -> None:
    state, log = _planned(_wf())
    assert [e.type for e in log] == [
        "RunStarted", "PlanProposed", "PlanAccepted", "TaskReady", "TaskDispatched"]
    assert state.seq == 5
    assert state.task("search").status is machines.TaskStatus.DISPATCHED
    assert state.task("book").status is machines.TaskStatus.PENDING


def test_evolve_rejects_dispatch_of_a_pending_task() -> None:
    state, _ = _planned(_wf())
    bad = ev.TaskDispatched(task_id="book", attempt=1, input={}, idempotency_key="k",
                            timeout_s=1.0, src="pending", dst="dispatched")
    before = state.to_dict()
    with pytest.raises(machines.IllegalTransitionError) as caught:
        machines.evolve(state, bad)
    err = caught.value
    message = str(err)
    assert "'dispatch'" in message
    assert "'pending'" in message
    assert "ready, retry_wait, dispatched" in message
    assert "at seq 6" in message
    assert (err.trigger, err.state, err.seq) == ("dispatch", "pending", 6)
    assert set(err.allowed) == {"ready", "retry_wait", "dispatched"}
    assert state.to_dict() == before


def test_evolve_rejects_a_wrong_recorded_source_state() -> None:
    state, _ = _planned(_wf())
    # search is dispatched; a log claiming it received from 'ready' was edited.
    edited = ev.OutputReceived(task_id="search", attempt=1, output={"price": 1.0},
                               src="ready", dst="validating")
    with pytest.raises(machines.IllegalTransitionError) as caught:
        machines.evolve(state, edited)
    message = str(caught.value)
    assert "'receive'" in message
    assert "'dispatched'" in message
    assert "allowed from: dispatched" in message
    assert "ready -> validating" in message


def test_evolve_rejects_a_wrong_recorded_destination_and_run_moves() -> None:
    state, _ = _planned(_wf())
    with pytest.raises(machines.IllegalTransitionError, match="'receive'"):
        machines.evolve(state, ev.OutputReceived(
            task_id="search", attempt=1, output={}, src="dispatched", dst="succeeded"))
    with pytest.raises(machines.IllegalTransitionError) as caught:
        machines.evolve(state, ev.RunWaiting(escalations=[], src="planning", dst="waiting"))
    assert "'wait'" in str(caught.value)
    assert "'running'" in str(caught.value)
    assert caught.value.allowed == ("running",)
    fresh = machines.RunState(run_id="r2")
    with pytest.raises(machines.IllegalTransitionError, match=r"'complete'.*'created'"):
        machines.evolve(fresh, ev.RunCompleted(src="created", dst="completed"))


def test_evolve_rejects_events_for_tasks_not_in_the_plan() -> None:
    state, _ = _planned(_wf())
    with pytest.raises(machines.IllegalTransitionError, match="no such task"):
        machines.evolve(state, ev.TaskReady(task_id="ghost", src="pending", dst="ready"))


# -- decide ------------------------------------------------------------------

FACTS: list[ev.Event] = [
    ev.OutputReceived(task_id="search", attempt=1, output={"price": 99.0, "confidence": 0.9}),
    ev.OutputReceived(task_id="search", attempt=1, output={"price": "lots"}),
    ev.OutputReceived(task_id="search", attempt=1, output={"price": 99.0, "confidence": 0.1}),
    ev.AgentFailed(task_id="search", attempt=1, error_type="builtins.ValueError",
                   error_types=["builtins.ValueError", "builtins.Exception"], message="x"),
    ev.AgentFailed(task_id="search", attempt=1,
                   error_type="ledgerflow.PermanentError",
                   error_types=["ledgerflow.PermanentError"], message="x"),
    ev.AgentFailed(task_id="search", attempt=1, error_type="builtins.TimeoutError",
                   message="1s", timed_out=True),
    ev.RunCancelled(by="ops"),
    ev.RunResumed(by="me"),
    ev.DeadlinePassed(deadline_s=5.0),
]


@pytest.mark.parametrize("fact", FACTS, ids=lambda e: e.type)
def test_decide_is_pure_and_agrees_with_advance(fact: ev.Event) -> None:
    wf = _wf()
    state, _ = _planned(wf)
    before = copy.deepcopy(state.to_dict())
    decided = machines.decide(state, fact, wf)
    assert state.to_dict() == before
    assert decided
    assert decided == machines.decide(state, fact, wf)  # deterministic
    twin = copy.deepcopy(state)
    assert machines.advance(twin, fact, wf) == decided
    assert twin.seq == state.seq + len(decided)
    assert all(e.reason for e in decided), [e.type for e in decided if not e.reason]
    # The fold of the decided events is the state advance left behind.
    assert machines.fold(copy.deepcopy(state), decided).to_dict() == twin.to_dict()


def test_stale_fact_is_ignored() -> None:
    wf = _wf()
    state, _ = _planned(wf)
    late = ev.OutputReceived(task_id="search", attempt=7, output={"price": 1.0})
    assert machines.decide(state, late, wf) == []


def test_decide_rejects_non_facts() -> None:
    wf = _wf()
    state, _ = _planned(wf)
    with pytest.raises(TypeError, match="not a fact"):
        machines.decide(state, ev.TaskReady(task_id="book"), wf)


def test_backoff_is_deterministic_and_exponential() -> None:
    policy = machines.RetryPolicy(max_attempts=5, backoff_s=1.0, jitter=0.1)
    delays = [policy.delay("r1", "a", attempt=n) for n in (1, 2, 3)]
    assert delays == [policy.delay("r1", "a", attempt=n) for n in (1, 2, 3)]
    for n, delay in enumerate(delays):
        assert 0.9 * 2**n <= delay <= 2**n
    assert machines.RetryPolicy(backoff_s=0.0).delay("r", "t", attempt=3) == 0.0


def test_retry_policy_classifies_errors_by_recorded_names() -> None:
    policy = machines.RetryPolicy()
    assert policy.is_transient(["builtins.ValueError", "builtins.Exception"])
    assert not policy.is_transient(
        ["ledgerflow.PermanentError", "builtins.Exception"])
    assert policy.is_transient(["ledgerflow.PermanentError"], timed_out=True)
    with pytest.raises(machines.WorkflowDefinitionError, match="at least 1"):
        machines.RetryPolicy(max_attempts=0)
    with pytest.raises(machines.WorkflowDefinitionError, match="max_retries"):
        machines.Budget(max_retries=-1)
