"""Issue 12, scenario 4: a Hypothesis state machine drives the real orchestrator.

Each example is a fresh SQLite file and a short story of rules: start runs
of random plans (2-8 tasks over a random DAG) whose agents succeed, raise a
transient or a permanent error, time out, answer an invalid output or an
unsure one, some of them with side effects (idempotent or not); resolve open
escalations (output, retry, abandon); crash a drive (its asyncio task is
cancelled after N durable events, or inside an agent call after the agent's
side effect) and resume it with a fresh orchestrator; fork a run at a random
seq and drive the fork. After every rule the model in
``model_based_support`` holds every log and result to account: no agent saw
a value from an output that was not accepted, attempts and retries stay in
their bounds, a non-idempotent side effect happened at most once across
a family of forks (per attempt, and beyond the first only when a person
granted a retry), an
idempotent one always under one key, every outcome in the log is what the
agent was scripted to do, the fold of the log equals the state the
orchestrator returned, and every log verifies against the workflow.

Hypothesis prints the failing story (and how to reproduce it) on failure.
``LEDGERFLOW_MODEL_EXAMPLES`` raises the number of examples of the default test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from model_based_support import (
    Crash,
    MGoal,
    PlanSpec,
    RunModel,
    Sink,
    TaskSpec,
    build_workflow,
    check_attempts,
    check_inputs,
    check_keys_logged,
    check_outcomes,
    check_retries,
    check_settled,
    check_side_effects,
    crash_plans,
    index_of,
    plan_specs,
    resolved_value,
)

from ledgerflow import machines
from ledgerflow.eventstore import EventStore, open_store
from ledgerflow.replay.fork import fork_run
from ledgerflow.replay.verify import verify_run

#: One drive (start, resume, resolve) never takes this long; past it, it hangs.
DRIVE_LIMIT_S = 30.0
MAX_RUNS = 4
RESOLUTIONS = ("output", "retry", "abandon")
#: Resolutions drawn for settling one run; a run rarely needs more.
SETTLE = 8

Operation = Callable[[machines.Orchestrator], Coroutine[Any, Any, machines.RunResult]]


class OrchestratorModel(RuleBasedStateMachine):
    """The orchestrator on one SQLite file, against the model of ``model_based_support``."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="lf-model-"))
        self.db = self.dir / "runs.db"
        self.sink = Sink()
        self.runs: dict[str, RunModel] = {}

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- driving --------------------------------------------------------------

    def drive(self, run: RunModel, operation: Operation, crash: Crash | None) -> None:
        """Run one operation on the run (cancelled by ``crash``), then read what it left."""
        asyncio.run(asyncio.wait_for(self._drive(run, operation, crash), DRIVE_LIMIT_S))

    async def _drive(self, run: RunModel, operation: Operation, crash: Crash | None) -> None:
        async with open_store(self.db) as store:
            # A fresh orchestrator for every operation, as a restarted process would have.
            orch = machines.Orchestrator(store, lease_ttl_s=2.0,
                                         observers=[crash] if crash else [])
            self.sink.crash = crash
            driving = asyncio.create_task(operation(orch))
            if crash is not None:
                crash.target = driving
            result: machines.RunResult | None = None
            try:
                result = await driving
            except asyncio.CancelledError:
                # Only the crash cancels it; the test's own task is never cancelled here.
                assert crash is not None
                assert crash.fired
                assert driving.cancelled()
            finally:
                self.sink.crash = None
            run.crashed = result is None
            run.live = result.state.to_dict() if result is not None else None
            run.live_status = result.status if result is not None else None
            await self.snapshot(store, run)

    async def snapshot(self, store: EventStore, run: RunModel) -> None:
        run.log = [(env.seq, machines.decode_event(env.data))
                   for env in await store.read_all(run.run_id)]
        run.folded = (await machines.load_run_state(store, run.run_id)).to_dict()
        report = await verify_run(store, run.run_id, workflow=run.wf)
        run.verify_ok, run.verify_lines = report.ok, report.lines()

    def pick(self, data: st.DataObject, which: Callable[[RunModel], bool]) -> RunModel | None:
        """One of the runs ``which`` accepts, or None if there is none.

        Drawn as an index of fixed range, and rules have no preconditions on
        what drives left behind: a drive's timing may differ when Hypothesis
        replays an example, and the draws must not depend on it.
        """
        candidates = sorted(r for r, m in self.runs.items() if which(m))
        n = data.draw(st.integers(0, 2 * MAX_RUNS - 1), label="run")
        return self.runs[candidates[n % len(candidates)]] if candidates else None

    def new_run_id(self, kind: str) -> str:
        # Deterministic, so that an example replays with the same draws.
        return f"{kind}{len(self.runs) + 1}"

    @staticmethod
    async def resolution(orch: machines.Orchestrator, run: RunModel, tid: str,
                         action: str) -> machines.RunResult:
        if action == "output":
            return await orch.resolve(
                run.run_id, tid, workflow=run.wf,
                output={"value": resolved_value(index_of(tid)), "confidence": 1.0})
        return await orch.resolve(run.run_id, tid, workflow=run.wf,
                                  retry=action == "retry", abandon=action == "abandon")

    # -- rules ----------------------------------------------------------------

    @initialize(spec=plan_specs(), crash=crash_plans())
    def first_run(self, spec: PlanSpec, crash: Crash | None) -> None:
        self.start(spec, crash)

    @precondition(lambda self: len(self.runs) < MAX_RUNS)
    @rule(spec=plan_specs(), crash=crash_plans())
    def start_another_run(self, spec: PlanSpec, crash: Crash | None) -> None:
        self.start(spec, crash)

    def start(self, spec: PlanSpec, crash: Crash | None) -> None:
        run_id = self.new_run_id("run")
        wf = build_workflow(spec, self.sink)
        run = self.runs[run_id] = RunModel(run_id=run_id, spec=spec, wf=wf, family=run_id)

        async def op(orch: machines.Orchestrator) -> machines.RunResult:
            return await orch.start(wf, MGoal(), run_id=run_id)

        self.drive(run, op, crash)

    @rule(data=st.data(), which=st.integers(0, 7), action=st.sampled_from(RESOLUTIONS),
          crash=crash_plans())
    def resolve_an_escalation(self, data: st.DataObject, which: int, action: str,
                              crash: Crash | None) -> None:
        run = self.pick(data, lambda r: bool(r.escalations) and r.status != "completed")
        if run is None:
            return
        tid = run.escalations[which % len(run.escalations)]

        async def op(orch: machines.Orchestrator) -> machines.RunResult:
            return await self.resolution(orch, run, tid, action)

        self.drive(run, op, crash)

    @rule(data=st.data(), actions=st.lists(st.sampled_from(RESOLUTIONS), min_size=SETTLE,
                                           max_size=SETTLE))
    def settle_a_run_by_resolving_each_escalation(self, data: st.DataObject,
                                                   actions: list[str]) -> None:
        run = self.pick(data, lambda r: r.status == "waiting" and not r.crashed)
        # Drawn up front, in full: how many are used depends on what the drives did.
        for action in actions:
            if run is None or run.status != "waiting":
                return
            tid = run.escalations[0]

            async def op(orch: machines.Orchestrator, tid: str = tid,
                         action: str = action, run: RunModel = run) -> machines.RunResult:
                return await self.resolution(orch, run, tid, action)

            self.drive(run, op, None)

    @rule(data=st.data(), crash=crash_plans())
    def resume_after_a_crash(self, data: st.DataObject, crash: Crash | None) -> None:
        run = self.pick(data, lambda r: r.crashed)
        if run is None:
            return
        self.drive(run, lambda orch: orch.resume(run.run_id, run.wf), crash)

    @rule(data=st.data())
    def resume_a_waiting_run(self, data: st.DataObject) -> None:
        run = self.pick(data, lambda r: r.status == "waiting" and not r.crashed)
        if run is None:
            return
        self.drive(run, lambda orch: orch.resume(run.run_id, run.wf), None)
        assert run.live_status == "waiting", run.live_status

    @precondition(lambda self: len(self.runs) < 2 * MAX_RUNS)
    @rule(data=st.data(), where=st.floats(0.0, 1.0), crash=crash_plans())
    def fork_and_drive_the_fork(self, data: st.DataObject, where: float,
                                crash: Crash | None) -> None:
        origin = self.pick(data, lambda r: bool(r.log))
        if origin is None:
            return
        last = origin.log[-1][0]
        at = max(1, min(last, round(where * last)))
        fork_id = self.new_run_id("fork")
        fork = self.runs[fork_id] = RunModel(run_id=fork_id, spec=origin.spec, wf=origin.wf,
                                             family=origin.family, origin=origin.run_id,
                                             fork_at=at)

        async def op(orch: machines.Orchestrator) -> machines.RunResult:
            await fork_run(orch.store, origin.run_id, at_seq=at, workflow=origin.wf,
                           new_run_id=fork_id)
            return await orch.resume(fork_id, origin.wf)

        self.drive(fork, op, crash)

    # -- invariants -----------------------------------------------------------

    @invariant()
    def no_task_ever_saw_an_output_that_was_not_accepted(self) -> None:
        for run in self.runs.values():
            check_inputs(run, [c for c in self.sink.calls if c.run_id == run.run_id])

    @invariant()
    def attempts_stay_within_the_policy_and_granted_retries(self) -> None:
        for run in self.runs.values():
            check_attempts(run, [c for c in self.sink.calls if c.run_id == run.run_id])

    @invariant()
    def retries_stay_within_the_run_budget(self) -> None:
        for run in self.runs.values():
            check_retries(run)

    @invariant()
    def side_effects_happen_at_most_once_and_under_one_key(self) -> None:
        check_side_effects(self.runs, self.sink)
        for run in self.runs.values():
            check_keys_logged(run, [c for c in self.sink.calls if c.run_id == run.run_id])

    @invariant()
    def every_recorded_outcome_is_what_the_agent_did(self) -> None:
        for run in self.runs.values():
            members = sum(1 for r in self.runs.values() if r.family == run.family)
            check_outcomes(run, shared=members > 1)

    @invariant()
    def the_fold_of_the_log_equals_the_live_state(self) -> None:
        for run in self.runs.values():
            check_settled(run)

    @invariant()
    def every_log_verifies(self) -> None:
        for run in self.runs.values():
            assert run.verify_ok, (run.run_id, run.verify_lines)


def _run(max_examples: int, steps: int) -> None:
    # hypothesis leaves run_state_machine_as_test unannotated.
    run_state_machine_as_test(OrchestratorModel, settings=settings(  # type: ignore[no-untyped-call]
        max_examples=max_examples, stateful_step_count=steps, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    ))


def test_orchestrator_matches_the_model_under_random_plans_failures_crashes_and_forks() -> None:
    _run(int(os.environ.get("LEDGERFLOW_MODEL_EXAMPLES", "100")), steps=8)


@pytest.mark.slow
def test_orchestrator_matches_the_model_over_more_and_longer_stories() -> None:
    _run(200, steps=12)


# -- what the model found: a side effect performed twice under one key (fixed: the claims of
# machines/effect_claims.py; more stories in test_machines_fork_family.py) ---------------------


def _escalating_then_booking(sink: Sink) -> tuple[PlanSpec, machines.Workflow]:
    """t0 fails permanently (the run waits on it); t1, which needs it, books, not idempotently."""
    spec = PlanSpec(
        tasks=(TaskSpec(kind="plain", max_attempts=1),
               TaskSpec(needs=(0,), kind="non_idempotent", max_attempts=1)),
        behaviour={(0, 1): "permanent"}, max_retries=0, max_concurrency=1)
    return spec, build_workflow(spec, sink)


async def _resolve_t0(orch: machines.Orchestrator, run_id: str,
                      wf: machines.Workflow) -> machines.RunResult:
    return await orch.resolve(run_id, "t0", workflow=wf,
                              output={"value": resolved_value(0), "confidence": 1.0})


async def test_two_forks_of_a_waiting_run_perform_a_non_idempotent_side_effect_once(
    tmp_path: Path,
) -> None:
    sink = Sink()
    _, wf = _escalating_then_booking(sink)
    async with open_store(tmp_path / "runs.db") as store:
        orch = machines.Orchestrator(store)
        run = await orch.start(wf, MGoal(), run_id="origin")
        assert run.status == "waiting"
        assert run.escalations == ["t0"]
        last = (await store.last_seq("origin"))
        for fork_id in ("fork-a", "fork-b"):
            await fork_run(store, "origin", at_seq=last, workflow=wf, new_run_id=fork_id)
            forked = await _resolve_t0(orch, fork_id, wf)
            assert forked.status == "completed", forked.reason
    # Both forks booked t1 with the same input under the same key.
    assert sorted(sink.performed.values()) == [1], sink.calls


async def test_an_origin_resolved_after_its_fork_does_not_repeat_the_forks_side_effect(
    tmp_path: Path,
) -> None:
    sink = Sink()
    _, wf = _escalating_then_booking(sink)
    async with open_store(tmp_path / "runs.db") as store:
        orch = machines.Orchestrator(store)
        run = await orch.start(wf, MGoal(), run_id="origin")
        assert run.status == "waiting"
        await fork_run(store, "origin", at_seq=await store.last_seq("origin"), workflow=wf,
                       new_run_id="fork")
        assert (await _resolve_t0(orch, "fork", wf)).status == "completed"
        resolved = await _resolve_t0(orch, "origin", wf)
        assert resolved.status in ("completed", "waiting"), resolved.reason
    assert sorted(sink.performed.values()) == [1], sink.calls
