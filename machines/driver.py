"""The commit-pipelined driver: one run being driven, from facts to durable decisions.

Commits are pipelined: at most one append is in flight, and everything
decided meanwhile goes into the next one (group commit). An action that can
do harm if its event is lost (calling a side-effecting agent, asking an
escalation handler) waits until its event is durable; calling an agent free
of side effects, the planner or a backoff timer starts at once, overlapping
the fsync (if the process dies first, the log simply shows no dispatch, and
resume dispatches again).

Example::

    driver = Driver(orch, wf, state, seq=state.seq)
    await driver.run([RunResumed(by=orch.owner)], resuming=True)
    driver.result().status
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ledgerflow.eventstore import NewEvent, TaskFact, TaskOffer
from ledgerflow.machines import calls
from ledgerflow.machines import events as ev
from ledgerflow.machines.decide import advance
from ledgerflow.machines.driver_forks import ForkRecovery
from ledgerflow.machines.errors import AttemptClosedError, ResolutionError, SecretErasedError
from ledgerflow.machines.fsm import RunStatus, TaskStatus
from ledgerflow.machines.lease_guard import HeldLease, fencing_token_of
from ledgerflow.machines.observers import tell_observers
from ledgerflow.machines.origin import OriginIndex
from ledgerflow.machines.results import RunResult
from ledgerflow.machines.secret_keeping import SecretKeeper, fact_values, secret_holders
from ledgerflow.machines.snapshots import SnapshotWriter
from ledgerflow.machines.state import RunState
from ledgerflow.machines.step_rules import PLANNER
from ledgerflow.machines.steps import StepJournal
from ledgerflow.machines.task_exchange import OwnerExchange
from ledgerflow.machines.workflow import AgentSpec, Workflow

if TYPE_CHECKING:
    from ledgerflow.machines.orchestrator import Orchestrator

__all__ = ["Driver"]

log = logging.getLogger("ledgerflow")


async def _const(fact: ev.Event) -> ev.Event:
    return fact


class Driver(ForkRecovery):
    """One run being driven: its state, its log position, its in-flight work."""

    def __init__(self, orch: Orchestrator, wf: Workflow, state: RunState, seq: int) -> None:
        self.orch = orch
        self.wf = wf
        self.state = state
        self.seq = seq
        #: Work whose outcome is a fact, with its start order.
        self.work: dict[asyncio.Task[Any], int] = {}
        self.finished: asyncio.Queue[asyncio.Task[Any]] = asyncio.Queue()
        self.order = 0
        self.deadline: asyncio.Task[Any] | None = None
        #: Decided, not yet handed to the store.
        self.pending: list[ev.Event] = []
        self.committing: asyncio.Task[None] | None = None
        self.in_commit: list[ev.Event] = []
        self.stopped = asyncio.Event()
        #: A fork's origin, indexed on first need (never for a run that is no fork).
        self._origin: OriginIndex | None = None
        #: Agents waiting for their step facts: decided (StepRecorded) or durable
        #: (StepStarted), by (task, attempt, step index).
        self.step_waiters: dict[tuple[str, int, int], asyncio.Future[None]] = {}
        #: The fence of the run's lease (set when bound to it): appends carry it.
        self.fence: int | None = None
        #: The lease itself (set when bound): a side effect starts only while it
        #: is certainly held (:mod:`ledgerflow.machines.lease_guard`).
        self.lease: HeldLease | None = None
        #: Attempts run by the pool instead of this process (a worker's runs).
        self.exchange: OwnerExchange | None = None
        if orch.spread_tasks and state.forked_from is None and orch.recording is None:
            self.exchange = OwnerExchange(orch.store, state.run_id, on_offer=orch.on_offer,
                                          on_answer=orch.on_answer)
        self.pump: asyncio.Task[Any] | None = None
        #: Answers to the pool's facts, by fact id, that wait for the next commit
        #: (their decisions are in it), and those of the commit in flight.
        self.answers_after_commit: list[int] = []
        self.answers_in_commit: list[int] = []
        #: Where each attempt of this drive runs: True here, False offered to the pool.
        self.placed: dict[tuple[str, int], bool] = {}
        #: Snapshots of the state every ``orch.snapshot_every`` events (a resume's cache).
        self.snapshots = SnapshotWriter(orch.snapshot_every, seq=seq)
        #: The vault's secrets this run refers to (:mod:`.secret_keeping`).
        self.secrets = SecretKeeper(orch.store)

    async def run(
        self, facts: list[ev.Event], *, resuming: bool = False, strict: bool = False
    ) -> None:
        """Decide on ``facts``, then drive until nothing is left to wait for."""
        # Escalations already in the log may be re-asked; new ones wait until durable.
        logged_escalations = list(self.state.escalations)
        # A queued run started by resume has no planner call of its own to re-arm.
        was_planning = self.state.status is RunStatus.PLANNING
        ended = False
        try:
            # Outputs in the log hold references for their secrets: the decider
            # validates with the values, agents are handed the values.
            await self.secrets.settle(self.wf, secret_holders(self.state, facts))
            if resuming and self.state.forked_from is not None:
                facts = await self.recovered_from_origin() + facts
            if resuming and self.exchange is not None:
                # An attempt a live worker of the pool may still be running (its owner
                # died, not it) is offered again, never started here a second time:
                # the re-offer keeps that worker's claim, and its facts come to us.
                for row in await self.orch.store.task_exchange(self.state.run_id):
                    self.placed[(row.task_id, row.attempt)] = False
            self.queue(self.decide(facts, strict=strict))
            if resuming:
                self.rearm(logged_escalations, was_planning=was_planning)
            self.arm_deadline()
            while self.work or self.pending or self.committing is not None:
                if not self.work and self.committing is None:
                    # Nothing to overlap with: commit inline, saving a task hand-off.
                    events, self.pending = self.pending, []
                    answers, self.answers_after_commit = self.answers_after_commit, []
                    await self.commit(events)
                    self.perform(events, durable=True)
                    self.answer_durable(answers)
                    continue
                self.flush()
                finished = [await self.finished.get()]
                while not self.finished.empty():
                    finished.append(self.finished.get_nowait())
                arrived: list[ev.Event] = []
                for work in sorted(finished, key=self._order):
                    fact = self.collect(work)
                    if fact is not None:
                        arrived.append(fact)
                if arrived:
                    self.queue(self.decide(arrived))
                self.ensure_pump()
            ended = True
        finally:
            await self.stop_all()
            if self.exchange is not None:
                await self.exchange.close(self.fence, withdraw=ended)
            self.stopped.set()

    async def cancel(self, by: str) -> RunResult:
        """Cancel this live run from the same process: a fact like any other."""
        if not self.state.status.terminal and not self.stopped.is_set():
            self.spawn(_const(ev.RunCancelled(by=by)))
            await self.stopped.wait()
        return self.result()

    def _order(self, work: asyncio.Task[Any]) -> int:
        return self.work.get(work, 0)

    def collect(self, work: asyncio.Task[Any]) -> ev.Event | None:
        """The fact a finished piece of work brought, if any."""
        if work is self.committing:
            self.committing = None
            work.result()  # a failed append ends the drive: the log is the truth
            self.seq += len(self.in_commit)
            self.perform(self.in_commit, durable=True)
            self.in_commit = []
            answers, self.answers_in_commit = self.answers_in_commit, []
            self.answer_durable(answers)
            return None
        if work is self.pump:
            self.pump = None
            self.work.pop(work, None)
            if not work.cancelled():
                self.take_remote(work.result())
            return None
        if work is self.deadline:
            self.deadline = None
        elif self.work.pop(work, None) is None:
            return None
        if work.cancelled():
            return None
        fact: ev.Event | None = work.result()
        return fact

    def decide(self, facts: list[ev.Event], *, strict: bool = False) -> list[ev.Event]:
        events: list[ev.Event] = []
        for fact in facts:
            try:
                decided = advance(self.state, fact, self.wf, secrets=self.secrets.known)
            except ResolutionError:
                if strict:
                    raise
                log.warning("Dropped a resolution that no longer applies: %r", fact)
                continue
            events.extend(decided)
            kind = type(fact)
            if kind is ev.StepRecorded or kind is ev.StepStarted:
                self.step_decided(fact, taken=bool(decided))  # type: ignore[arg-type]
        return events

    # -- journaled steps: the agent's facts, through the same decider -------

    def journal(self, task_id: str, attempt: int) -> StepJournal:
        """The step journal of one dispatched attempt (or of the planner's call)."""
        return StepJournal(
            state=self.state, task_id=task_id, attempt=attempt,
            submit=self.submit_step, clock=self.orch.clock,
            max_event_bytes=self.orch.store.max_event_bytes, recording=self.orch.recording,
            before_side_effect=None if self.lease is None else self.lease.confirm_for_side_effect,
            scrub=self.secrets.scrubber(self.state.goal if task_id == PLANNER
                                        else self.state.tasks[task_id].input),
            secrets=self.secrets.for_steps(self.state.run_id))

    def submit_step(self, fact: ev.StepStarted | ev.StepRecorded) -> asyncio.Future[None]:
        """Take a step fact like any other; the future is done once its event is durable.

        A step's function is never called before its start is on disk (a side
        effect), and an agent never sees a result the log could still lose:
        a crash at any point between steps repeats nothing.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.step_waiters[(fact.task_id, fact.attempt, fact.index)] = done
        self.spawn(_const(fact))
        return done

    def step_decided(self, fact: ev.StepStarted | ev.StepRecorded, *, taken: bool) -> None:
        if taken:
            return  # answered by step_durable once its commit lands
        done = self.step_waiters.pop((fact.task_id, fact.attempt, fact.index), None)
        if done is not None and not done.done():
            done.set_exception(AttemptClosedError(
                f"Attempt {fact.attempt} of task '{fact.task_id}' is no longer awaited (it "
                "timed out, or the run ended); its step was not recorded."))

    def step_durable(self, step: ev.StepStarted | ev.StepRecorded) -> None:
        done = self.step_waiters.pop((step.task_id, step.attempt, step.index), None)
        if done is not None and not done.done():
            done.set_result(None)

    def queue(self, events: list[ev.Event]) -> None:
        """Take decided events into the next commit; start what is safe to start now."""
        if not events:
            return
        self.pending.extend(events)
        self.perform(events, durable=False)

    def flush(self) -> None:
        if self.committing is None and self.pending:
            self.in_commit, self.pending = self.pending, []
            self.answers_in_commit, self.answers_after_commit = self.answers_after_commit, []
            self.committing = asyncio.create_task(self.commit(self.in_commit, count=False))
            self.committing.add_done_callback(self.finished.put_nowait)

    async def commit(self, events: list[ev.Event], *, count: bool = True) -> None:
        if not events:
            return
        at = self.orch.clock()
        # Encoded before the append: once it is awaited, the state moves on.
        self.snapshots.take(self.state)
        envelopes = await self.orch.store.append(
            self.state.run_id,
            [NewEvent(type=e.type, data=ev.encode_event(e)) for e in events],
            expected_seq=self.seq,
            status=self.state.status.value,
            label=self.state.workflow,
            at=at,
            fence=self.fence,
        )
        if self.orch.observers:
            tell_observers(self.orch.observers, self.state.run_id, events,
                           first_seq=self.seq + 1, at=at)
        if count:
            self.seq += len(events)
        await self.snapshots.store(self.orch.store, envelopes)

    def spawn(self, coro: Coroutine[Any, Any, ev.Event | None]) -> asyncio.Task[Any]:
        self.order += 1
        work = asyncio.create_task(coro)
        self.work[work] = self.order
        work.add_done_callback(self.finished.put_nowait)
        return work

    def perform(self, events: list[ev.Event], *, durable: bool) -> None:
        """Start what the events describe: the harmless at once, the rest once durable."""
        wf = self.wf
        tasks = self.state.tasks
        strict = self.orch.durable_dispatch
        for event in events:
            kind = type(event)  # exact types: events are final classes, and this is hot
            if kind is ev.TaskDispatched:
                dispatched: ev.TaskDispatched = event  # type: ignore[assignment]
                spec = wf.agents[tasks[dispatched.task_id].agent]
                side_effect = spec.side_effect
                if self.exchange is not None and not self.runs_here(dispatched, spec,
                                                                    durable=durable):
                    # The pool reads the dispatch from the log: offered once durable.
                    if durable:
                        self.exchange.offer(TaskOffer(
                            task_id=dispatched.task_id, attempt=dispatched.attempt,
                            label=wf.name, agent=spec.name), seq=self.seq)
                elif durable == (strict or side_effect):
                    if side_effect and self.state.forked_from is not None:
                        self.spawn(self.call_in_fork(dispatched))
                    else:
                        call = self.spawn(self.call_agent(dispatched,
                                                          self.orch.agent_slot(wf, spec)))
                        self.orch.count_local(call)
            elif durable:
                if kind is ev.TaskEscalated and wf.escalation_handler:
                    self.spawn(self.ask_handler(event.task_id))  # type: ignore[attr-defined]
                elif kind is ev.StepRecorded or kind is ev.StepStarted:
                    self.step_durable(event)  # type: ignore[arg-type]
            elif kind is ev.RunStarted:
                self.spawn(self.call_planner())
            elif kind is ev.RetryScheduled:
                retry: ev.RetryScheduled = event  # type: ignore[assignment]
                self.spawn(calls.timer(retry.task_id, retry.delay_s))
        if self.state.status.terminal:
            for work in self.work:
                work.cancel()
        elif self.exchange is not None and durable:
            self.ensure_pump()

    # -- the task exchange: attempts run by the pool ------------------------

    def runs_here(self, dispatched: ev.TaskDispatched, spec: AgentSpec, *,
                  durable: bool) -> bool:
        """Whether this attempt runs in this process rather than being offered to the pool.

        Decided once per attempt, when it could first start: here while this
        worker has room (no exchange round trips for a small run), offered
        once it is full (a wide fan-out spills over the pool). An agent with
        pool-wide limits is always offered: its limits are counted at claim.
        """
        key = (dispatched.task_id, dispatched.attempt)
        if key in self.placed:
            return self.placed[key]
        if spec.max_concurrent is not None or spec.per_minute is not None:
            here = False
        elif durable != (self.orch.durable_dispatch or spec.side_effect):
            return False  # not yet its moment: decided when it may start
        else:
            here = self.orch.local_room()
        self.placed[key] = here
        return here

    def ensure_pump(self) -> None:
        """Keep one reader of the pool's facts while anything is offered or to answer."""
        exchange = self.exchange
        if (exchange is None or self.pump is not None or not exchange.busy
                or self.state.status.terminal):
            return
        self.order += 1
        self.pump = asyncio.create_task(self.next_remote(exchange))
        self.work[self.pump] = self.order
        self.pump.add_done_callback(self.finished.put_nowait)

    async def next_remote(self, exchange: OwnerExchange) -> list[tuple[TaskFact, ev.Event | None]]:
        """The pool's next facts, with the secrets their outputs refer to fetched."""
        rows = await exchange.next_facts(self.fence)
        await self.secrets.load(fact_values(fact) for _, fact in rows)
        return rows

    def take_remote(self, rows: list[tuple[TaskFact, ev.Event | None]]) -> None:
        """Decide on the facts the pool posted, in their order; answer each in turn."""
        exchange = self.exchange
        assert exchange is not None
        for row, fact in rows:
            if row.kind == "outcome":
                exchange.outcome_arrived(row.task_id, row.attempt)
            decided = [] if fact is None else self.decide([fact])
            if decided:
                # Answered once the commit holding its decisions is durable.
                self.queue(decided)
                self.answers_after_commit.append(row.id)
            else:
                exchange.answer(row.id, durable=False)

    def answer_durable(self, fact_ids: list[int]) -> None:
        if self.exchange is not None and fact_ids:
            for fact_id in fact_ids:
                self.exchange.answer(fact_id, durable=True)
            self.ensure_pump()

    async def call_agent(self, dispatched: ev.TaskDispatched,
                         slot: asyncio.Semaphore | None) -> ev.Event:
        """Call the attempt's agent here, once its ``max_concurrent`` leaves room."""
        async with slot if slot is not None else contextlib.nullcontext():
            spec = self.wf.spec(self.state.tasks[dispatched.task_id].agent)
            # Its forks share its keys: one of them may hold this side effect's claim.
            if (spec.side_effect and not spec.idempotent
                    and (shared := await self.shared_effect_outcome(dispatched)) is not None):
                return shared
            if spec.side_effect and self.lease is not None:
                await self.lease.confirm_for_side_effect()
            return await calls.call_agent(
                self.wf, self.state, dispatched,
                journal=self.journal(dispatched.task_id, dispatched.attempt),
                max_event_bytes=self.orch.store.max_event_bytes, slots=self.orch.slots,
                fencing_token=fencing_token_of(run_fence=self.fence), secrets=self.secrets)

    def call_planner(self) -> Coroutine[Any, Any, ev.Event]:
        return calls.call_planner(self.wf, self.state, journal=self.journal(PLANNER, 1),
                                  max_event_bytes=self.orch.store.max_event_bytes,
                                  secrets=self.secrets)

    def ask_handler(self, task_id: str) -> Coroutine[Any, Any, ev.Event | None]:
        return calls.ask_handler(self.wf, self.state, task_id, secrets=self.secrets,
                                 fencing_token=fencing_token_of(run_fence=self.fence))

    def rearm(self, logged_escalations: list[str], *, was_planning: bool) -> None:
        """After a resume: timers and handlers whose process is gone."""
        state = self.state
        if was_planning and state.status is RunStatus.PLANNING:
            self.spawn(self.call_planner())
        for task in state.tasks.values():
            if task.status is TaskStatus.RETRY_WAIT:
                self.spawn(calls.timer(task.id, 0.0))
        if self.wf.escalation_handler:
            for task_id in logged_escalations:
                if task_id in state.escalations:
                    self.spawn(self.ask_handler(task_id))

    def arm_deadline(self) -> None:
        """The deadline is a fact like any other, but it keeps no run alive."""
        state = self.state
        if state.deadline_s is None or state.status.terminal or state.budget_exhausted:
            return
        started = datetime.fromisoformat(state.started_at)
        remaining = (started.timestamp() + state.deadline_s) - self.orch.clock().timestamp()

        async def fire() -> ev.Event:
            await asyncio.sleep(max(0.0, remaining))
            return ev.DeadlinePassed(deadline_s=state.deadline_s or 0.0)

        self.deadline = asyncio.create_task(fire())
        self.deadline.add_done_callback(self.finished.put_nowait)

    async def stop_all(self) -> None:
        pending: list[asyncio.Task[Any]] = list(self.work)
        if self.deadline is not None:
            pending.append(self.deadline)
        for work in pending:
            work.cancel()
        if self.committing is not None:
            # Never abandon an append half-way: wait for it to land or fail.
            pending.append(self.committing)
        for work in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work
        self.work.clear()
        if calls.cancelled_from_outside():
            # A cancel of this task that landed during the clean-up above was
            # swallowed with the work's own: deliver it.
            raise asyncio.CancelledError

    def result(self) -> RunResult:
        state = self.state
        outputs: dict[str, BaseModel] = {}
        for task in state.tasks.values():
            if task.status is TaskStatus.SUCCEEDED and task.output is not None:
                spec = self.wf.agents.get(task.agent)
                if spec is not None:
                    try:
                        output = self.secrets.reveal(task.output, run_id=state.run_id,
                                                     what=f"the output of task '{task.id}'")
                    except SecretErasedError as exc:
                        log.warning("%s", exc)  # the result leaves it out; the log has it
                        continue
                    outputs[task.id] = spec.output.model_validate(output)
        return RunResult(
            run_id=state.run_id, status=state.status.value, outputs=outputs,
            reason=state.reason, state=state,
        )
