"""The model behind ``test_machines_model_based.py``: plans, scripted agents, crashes, checks.

The model is deliberately simple: it knows what every agent call was scripted
to do (per task and attempt), what every agent was handed, how often each
side effect was performed (a sink counting by idempotency key), and the
bounds the workflow declares. The checks hold the orchestrator's logs and
results against it. Kept apart from the state machine so that a failing check
can be replayed by hand on one log.

Example::

    spec = PlanSpec(tasks=(TaskSpec(),), behaviour={}, max_retries=2, max_concurrency=1)
    sink = Sink()
    wf = build_workflow(spec, sink)
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel, Field

from ledgerflow import machines
from ledgerflow.contracts import Plan, Task
from ledgerflow.machines import events as ev
from ledgerflow.machines.stable_names import (
    SIDE_EFFECT_INPUT_CHANGED,
    SIDE_EFFECT_OUTCOME_UNKNOWN,
    exception_names,
)

#: What an agent call does; "succeed" first so that Hypothesis shrinks towards it.
BEHAVIOURS = ("succeed", "transient", "permanent", "timeout", "invalid", "low_confidence")
KINDS = ("plain", "idempotent", "non_idempotent")
#: Behaviours are scripted for attempts 1..SCRIPTED; later (granted) attempts succeed.
SCRIPTED = 4
#: Tiny, so a "timeout" costs 10 ms; agents that answer never await, so never time out.
TIMEOUT_S = 0.01
MIN_CONFIDENCE = 0.5
WORKFLOW_NAME = "model-based"

_PERMANENT = exception_names(machines.PermanentError)[0]
_TRANSIENT = exception_names(ConnectionError)[0]
_FORK_REFUSALS = {SIDE_EFFECT_INPUT_CHANGED, SIDE_EFFECT_OUTCOME_UNKNOWN}


class MGoal(BaseModel):
    seed: int = 3


class MIn(BaseModel):
    seed: int
    values: list[int]


class MOut(BaseModel):
    value: int
    confidence: float = Field(ge=0, le=1)


@dataclass(frozen=True)
class TaskSpec:
    """One task of a plan: which earlier tasks it needs, and its agent's nature."""

    needs: tuple[int, ...] = ()
    kind: str = "plain"
    max_attempts: int = 3
    retry_low_confidence: bool = False

    @property
    def side_effect(self) -> bool:
        return self.kind != "plain"

    @property
    def idempotent(self) -> bool:
        return self.kind == "idempotent"


@dataclass(frozen=True)
class PlanSpec:
    """A random plan, what each (task, attempt) call does, and the run's limits."""

    tasks: tuple[TaskSpec, ...]
    behaviour: dict[tuple[int, int], str]
    max_retries: int | None
    max_concurrency: int

    def does(self, index: int, attempt: int) -> str:
        return self.behaviour.get((index, attempt), "succeed")


@st.composite
def plan_specs(draw: st.DrawFn) -> PlanSpec:
    """2-8 tasks over a random DAG of earlier tasks, each with its own agent and script."""
    n = draw(st.integers(2, 8))
    tasks = tuple(
        TaskSpec(
            needs=tuple(sorted(draw(st.sets(st.integers(0, i - 1), max_size=3)))) if i else (),
            kind=draw(st.sampled_from(KINDS)),
            max_attempts=draw(st.integers(1, 3)),
            retry_low_confidence=draw(st.booleans()),
        )
        for i in range(n)
    )
    # Succeeding is the common case: weighted so that most plans get somewhere.
    weighted = st.sampled_from(("succeed",) * 5 + BEHAVIOURS[1:])
    behaviour = {(i, a): draw(weighted) for i in range(n) for a in range(1, SCRIPTED + 1)}
    return PlanSpec(tasks=tasks, behaviour=behaviour,
                    max_retries=draw(st.none() | st.integers(0, 6)),
                    max_concurrency=draw(st.integers(1, 3)))


def task_id(index: int) -> str:
    return f"t{index}"


def index_of(tid: str) -> int:
    return int(tid[1:])


def good_value(index: int, attempt: int) -> int:
    """What a succeeding call answers: unique per task and attempt."""
    return 1000 * (index + 1) + attempt


def low_value(index: int, attempt: int) -> int:
    """What an unsure call answers: never a good value, so a leak downstream is visible."""
    return -good_value(index, attempt)


def resolved_value(index: int) -> int:
    """What a person supplies when resolving with an output."""
    return 500_000 + index


@dataclass(frozen=True)
class Call:
    """One call of an agent, exactly as the agent saw it."""

    run_id: str
    task_id: str
    attempt: int
    key: str
    values: tuple[int, ...]
    seed: int


class Crash:
    """Cancels the driving task, as a crash would stop it: after N durable events,
    or inside the k-th agent call (after that call's side effect, before its outcome).

    It is a :class:`~ledgerflow.machines.RunObserver`; it raises nothing.
    """

    def __init__(self, *, after_events: int | None = None, at_call: int | None = None) -> None:
        self.after_events = after_events
        self.at_call = at_call
        self.target: asyncio.Task[Any] | None = None
        self.events = 0
        self.calls = 0
        self.fired = False

    def __repr__(self) -> str:
        return f"Crash(after_events={self.after_events}, at_call={self.at_call})"

    def fire(self) -> None:
        if not self.fired and self.target is not None and not self.target.done():
            self.fired = True
            self.target.cancel()

    def committed(self, run_id: str, events: Sequence[ev.Event], *, first_seq: int,
                  at: datetime) -> None:
        self.events += len(events)
        if self.after_events is not None and self.events >= self.after_events:
            self.fire()

    def agent_called(self) -> bool:
        """Count a call; True if the crash fires inside it."""
        self.calls += 1
        if self.at_call is not None and self.calls == self.at_call and not self.fired:
            self.fire()
            return self.fired
        return False


def crash_plans() -> st.SearchStrategy[Crash | None]:
    """No crash (half the time), a crash after N durable events, or one inside an agent."""
    return st.one_of(
        st.none(),
        st.builds(lambda n: Crash(after_events=n), st.integers(1, 30)),
        st.builds(lambda k: Crash(at_call=k), st.integers(1, 6)),
    )


@dataclass
class Sink:
    """Everything the agents saw and did, across every run of one example."""

    calls: list[Call] = field(default_factory=list)
    #: Side effects performed, by idempotency key (a sink that counts by key).
    performed: Counter[str] = field(default_factory=Counter)
    #: The crash plan of the drive in progress, if any.
    crash: Crash | None = None


def build_workflow(spec: PlanSpec, sink: Sink) -> machines.Workflow:
    """The workflow of one plan: a planner returning it and one scripted agent per task."""
    wf = machines.Workflow(WORKFLOW_NAME, goal=MGoal, max_concurrency=spec.max_concurrency,
                           budget=machines.Budget(max_retries=spec.max_retries))

    @wf.planner
    async def planner(goal: MGoal, ctx: machines.AgentContext) -> Plan:
        return Plan(tasks=[
            Task(id=task_id(i), agent=f"a{i}", needs=[task_id(j) for j in t.needs],
                 inputs={"seed": "$goal.seed",
                         "values": [f"$t{j}.value" for j in t.needs]})
            for i, t in enumerate(spec.tasks)
        ])

    for i, t in enumerate(spec.tasks):
        wf.agent(
            input=MIn, output=MOut, name=f"a{i}", min_confidence=MIN_CONFIDENCE,
            timeout_s=TIMEOUT_S, side_effect=t.side_effect, idempotent=t.idempotent,
            retry=machines.RetryPolicy(max_attempts=t.max_attempts, backoff_s=0.0, jitter=0.0,
                                       retry_low_confidence=t.retry_low_confidence),
        )(_scripted_agent(spec, sink, i))
    return wf


def _scripted_agent(spec: PlanSpec, sink: Sink, index: int) -> Any:
    side_effect = spec.tasks[index].side_effect

    async def act(inp: MIn, ctx: machines.AgentContext) -> Any:
        sink.calls.append(Call(run_id=ctx.run_id, task_id=ctx.task_id, attempt=ctx.attempt,
                               key=ctx.idempotency_key, values=tuple(inp.values),
                               seed=inp.seed))
        if side_effect:
            # The effect happens first: whatever follows, it was performed.
            sink.performed[ctx.idempotency_key] += 1
        if sink.crash is not None and sink.crash.agent_called():
            await asyncio.sleep(30)  # cancelled with the drive: its outcome is never known
        what = spec.does(index, ctx.attempt)
        if what == "transient":
            raise ConnectionError("flaky upstream")
        if what == "permanent":
            raise machines.PermanentError("cannot be done")
        if what == "timeout":
            await asyncio.sleep(30)
        if what == "invalid":
            return {"value": f"POISON-{good_value(index, ctx.attempt)}", "confidence": 0.9}
        if what == "low_confidence":
            return {"value": low_value(index, ctx.attempt), "confidence": 0.1}
        return MOut(value=good_value(index, ctx.attempt), confidence=0.9)

    return act


# -- the checks ---------------------------------------------------------------

Log = list[tuple[int, ev.Event]]


@dataclass
class RunModel:
    """What the model knows of one run (a started run or a fork)."""

    run_id: str
    spec: PlanSpec
    wf: machines.Workflow
    #: The run whose key_base this one shares (itself, or its forks' root).
    family: str
    #: The run it was forked from, and the seq its log was copied up to (0: not a fork).
    origin: str | None = None
    fork_at: int = 0
    crashed: bool = False
    log: Log = field(default_factory=list)
    folded: dict[str, Any] = field(default_factory=dict)
    #: The state the last completed operation returned (None after a crash).
    live: dict[str, Any] | None = None
    live_status: str | None = None
    verify_lines: list[str] = field(default_factory=list)
    verify_ok: bool = True

    @property
    def status(self) -> str:
        return str(self.folded.get("status", "created"))

    @property
    def escalations(self) -> list[str]:
        return sorted(self.folded.get("escalations", {}))


def grants(log: Log, tid: str, *, after_seq: int = 0) -> int:
    """Retries a person granted to ``tid`` in this log (after ``after_seq``)."""
    return sum(1 for seq, e in log if seq > after_seq and isinstance(e, ev.EscalationResolved)
               and e.task_id == tid and e.action == "retry")


def check_inputs(run: RunModel, calls: Sequence[Call]) -> None:
    """No agent was handed a value from an output that was not accepted."""
    spec = run.spec
    dispatched = {(e.task_id, e.attempt): (seq, e) for seq, e in run.log
                  if isinstance(e, ev.TaskDispatched)}
    for call in calls:
        needs = spec.tasks[index_of(call.task_id)].needs
        assert call.seed == 3, call
        assert len(call.values) == len(needs), call
        for need, value in zip(needs, call.values, strict=True):
            fine = {resolved_value(need)} | {
                good_value(need, a) for a in range(1, 64) if spec.does(need, a) == "succeed"}
            assert value in fine, (
                f"{call.task_id} attempt {call.attempt} of run {call.run_id} was handed "
                f"{value} from t{need}, which no accepted output of t{need} can be")
        found = dispatched.get((call.task_id, call.attempt))
        if found is None:
            continue  # dispatched in a batch a crash lost: checked against the script only
        seq, event = found
        assert event.input == {"seed": call.seed, "values": list(call.values)}, (call, event)
        accepted = _accepted_before(run.log, seq)
        for need, value in zip(needs, call.values, strict=True):
            assert accepted.get(task_id(need)) == value, (
                f"{call.task_id} attempt {call.attempt} (dispatched at seq {seq}) got {value} "
                f"from t{need}, whose accepted output in the log is "
                f"{accepted.get(task_id(need))}")


def _accepted_before(log: Log, seq: int) -> dict[str, int]:
    accepted: dict[str, int] = {}
    for s, e in log:
        if s >= seq:
            break
        if isinstance(e, ev.OutputAccepted):
            accepted[e.task_id] = e.output["value"]
        elif isinstance(e, ev.EscalationResolved) and e.action == "output":
            assert e.output is not None
            accepted[e.task_id] = e.output["value"]
    return accepted


def check_attempts(run: RunModel, calls: Sequence[Call]) -> None:
    """Attempts per task stay within max_attempts plus the retries people granted."""
    for seq, e in run.log:
        if isinstance(e, ev.TaskDispatched):
            t = run.spec.tasks[index_of(e.task_id)]
            allowed = t.max_attempts + grants(run.log[:seq], e.task_id)
            assert e.attempt <= allowed, (
                f"run {run.run_id} dispatched {e.task_id} attempt {e.attempt} at seq {seq}; "
                f"allowed {allowed}")
    for call in calls:
        t = run.spec.tasks[index_of(call.task_id)]
        allowed = t.max_attempts + grants(run.log, call.task_id)
        assert call.attempt <= allowed, (call, allowed)


def check_retries(run: RunModel) -> None:
    """Automatic retries across the run stay within Budget(max_retries)."""
    scheduled = sum(1 for _, e in run.log if isinstance(e, ev.RetryScheduled))
    limit = run.spec.max_retries
    assert limit is None or scheduled <= limit, (
        f"run {run.run_id} scheduled {scheduled} retries, budget {limit}")
    assert run.folded["budget"]["retries_used"] == scheduled


def check_side_effects(runs: dict[str, RunModel], sink: Sink) -> None:
    """Side effects, as the library promises them across a run's family of forks.

    An idempotent agent is called under one key for every call of a task in a
    family of forks. A non-idempotent effect is performed once per attempt
    across the whole family (a run never repeats what it, the origins it was
    forked from, its sibling forks or its own forks already did: they claim
    it in the store first), and more than once by one run only when a person
    granted it a retry.
    """
    keys: dict[tuple[str, str], set[str]] = {}
    for position, call in enumerate(sink.calls):
        run = runs[call.run_id]
        t = run.spec.tasks[index_of(call.task_id)]
        if not t.side_effect:
            continue
        keys.setdefault((run.family, call.task_id), set()).add(call.key)
        if t.idempotent:
            continue
        family = {r.run_id for r in runs.values() if r.family == run.family}
        earlier = [c for c in sink.calls[:position] if c.run_id in family
                   and c.key == call.key and c.attempt == call.attempt]
        assert not earlier, (
            f"non-idempotent task {call.task_id} attempt {call.attempt} was performed again by "
            f"run {call.run_id} after {[c.run_id for c in earlier]} had performed it")
    for (family_id, tid), seen in keys.items():
        assert len(seen) == 1, f"task {tid} of run family {family_id} was called with keys {seen}"
    for run in runs.values():
        for i, t in enumerate(run.spec.tasks):
            if t.kind != "non_idempotent":
                continue
            tid = task_id(i)
            performed = sum(1 for c in sink.calls if c.run_id == run.run_id and c.task_id == tid)
            granted = grants(run.log, tid, after_seq=run.fork_at)
            assert performed <= 1 + granted, (
                f"non-idempotent task {tid} was performed {performed} times by run "
                f"{run.run_id}, with {granted} retries granted")


def check_keys_logged(run: RunModel, calls: Sequence[Call]) -> None:
    """Every call carried the key its dispatch recorded."""
    keys = {e.task_id: e.idempotency_key for _, e in run.log if isinstance(e, ev.TaskDispatched)}
    for call in calls:
        if call.task_id in keys:
            assert call.key == keys[call.task_id], (call, keys[call.task_id])


def check_outcomes(run: RunModel, *, shared: bool) -> None:
    """Every outcome the log records is what the script made the agent do.

    ``shared``: the run's family has another member (it is a fork, or has
    one), whose outcome this run may have been served, or whose side effect
    this run may have refused to repeat.
    """
    events = run.log
    for pos, (seq, e) in enumerate(events):
        if not isinstance(e, ev.OutputReceived | ev.AgentFailed):
            continue
        index = index_of(e.task_id)
        what = run.spec.does(index, e.attempt)
        nxt = next((x for _, x in events[pos + 1:]
                    if isinstance(x, ev.TaskEvent) and x.task_id == e.task_id), None)
        where = f"run {run.run_id} seq {seq}: {e.task_id} attempt {e.attempt} scripted {what}"
        if isinstance(e, ev.AgentFailed):
            if _FORK_REFUSALS & set(e.error_types):
                assert shared, where
                continue
            assert what in ("transient", "permanent", "timeout"), (where, e)
            if what == "timeout":
                assert e.timed_out, (where, e)
            elif what == "permanent":
                assert _PERMANENT in e.error_types, (where, e)
                assert nxt is None or isinstance(nxt, ev.TaskEscalated), (where, nxt)
            else:
                assert _TRANSIENT in e.error_types, (where, e)
                assert not e.timed_out, (where, e)
            continue
        if e.reason.startswith("Reused the outcome"):
            # A member served another's output under the same key and input:
            # that member's last answer, which may be another attempt's.
            assert shared, where
            what = _answered(index, e.output)
        assert what in ("succeed", "invalid", "low_confidence"), (where, e)
        if nxt is None:
            continue
        if what == "succeed":
            assert isinstance(nxt, ev.OutputAccepted), (where, nxt)
            attempt = nxt.output["value"] - 1000 * (index + 1)
            assert run.spec.does(index, attempt) == "succeed", (where, nxt)
        else:
            assert isinstance(nxt, ev.OutputRejected), (where, nxt)
            assert nxt.low_confidence == (what == "low_confidence"), (where, nxt)


def _answered(index: int, output: Any) -> str:
    """Which scripted behaviour produced ``output`` (an answer of task ``index``)."""
    value = output.get("value") if isinstance(output, dict) else None
    if not isinstance(value, int):
        return "invalid"
    return "low_confidence" if value < 0 else "succeed"


def check_settled(run: RunModel) -> None:
    """A run an operation returned from has come to rest, and says why."""
    if run.live is None:
        return
    assert run.live == run.folded, [k for k in run.live if run.live[k] != run.folded.get(k)]
    status = run.live_status
    assert status in ("completed", "failed", "waiting"), status
    if status == "waiting":
        assert run.escalations, run.folded
    tasks = run.folded["tasks"]
    if status == "completed":
        assert all(t["status"] == "succeeded" for t in tasks.values()), tasks
    for tid, t in tasks.items():
        if t["status"] == "succeeded":
            index = index_of(tid)
            value = t["output"]["value"]
            attempt = value - 1000 * (index + 1)
            assert value == resolved_value(index) or (
                0 < attempt < 1000 and run.spec.does(index, attempt) == "succeed"), (tid, t)
