"""The imperative shell: call agents, turn what happens into facts, log decisions.

The :class:`Orchestrator` owns the I/O. It asks :func:`ledgerflow.machines.advance` what
follows from each fact, appends the resulting events in one transaction, and
only then performs what they describe: a ``TaskDispatched`` is durable before
its agent is called, so a crash can never hide a side effect. Facts that
arrive together (several agents finishing at once) are decided one after the
other and committed together: one fsync carries them all.

Example::

    async with open_store("runs.db") as store:
        orch = Orchestrator(store)
        run = await orch.start(wf, TripGoal(destination="Lisbon", passengers=2))
        print(run.status, run.outputs["book"])
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from pydantic import BaseModel, ValidationError

from ledgerflow.contracts import validate_output
from ledgerflow.eventstore import EventStore, NewEvent
from ledgerflow.machines import events as ev
from ledgerflow.machines.decide import advance
from ledgerflow.machines.errors import (
    PermanentError,
    ResolutionError,
    RunBusyError,
    RunNotFoundError,
    WorkflowDefinitionError,
)
from ledgerflow.machines.evolve import evolve
from ledgerflow.machines.fsm import RunStatus, TaskStatus
from ledgerflow.machines.loader import load_workflow
from ledgerflow.machines.policies import exception_names
from ledgerflow.machines.state import RunState
from ledgerflow.machines.workflow import (
    AgentContext,
    EscalationRequest,
    Resolution,
    Workflow,
    idempotency_key,
)

__all__ = ["Orchestrator", "RunResult", "load_run_state"]

log = logging.getLogger("ledgerflow")

_PERMANENT_NAMES = exception_names(PermanentError)
#: Room left in an event for everything around an agent's output.
_ENVELOPE_ROOM = 4096


async def _const(fact: ev.Event) -> ev.Event:
    return fact


def _cancelled_from_outside() -> bool:
    """Whether the running task was cancelled (by the driver or its caller)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RunResult:
    """Where a run stands after :meth:`Orchestrator.start`, ``resume`` or ``resolve``.

    ``outputs`` maps each succeeded task to its validated output model.
    """

    run_id: str
    status: str
    outputs: dict[str, BaseModel]
    reason: str
    state: RunState

    @property
    def escalations(self) -> list[str]:
        """Task ids waiting on a resolution."""
        return list(self.state.escalations)


async def load_run_state(store: EventStore, run_id: str, at: int | None = None) -> RunState:
    """Rebuild a run's state by folding its log (up to seq ``at``)."""
    state = RunState(run_id=run_id)
    decoder = ev.decode_event
    # Streamed in chunks: a million-event log folds in constant memory.
    async for envelope in store.read(run_id, until=at):
        evolve(state, decoder(envelope.data))
    if state.seq == 0:
        raise RunNotFoundError(run_id)
    return state


class Orchestrator:
    """Drives runs of workflows against an event store.

    ``clock`` stamps the events (recorded, never re-read on replay);
    ``lease_ttl_s`` is how long a crashed process keeps others from taking
    its runs over; ``lease_wait_s`` is how long to wait for a busy run's
    lease before refusing with :class:`RunBusyError`. With
    ``durable_dispatch=True`` every agent, not only a side-effecting one,
    starts only once its ``TaskDispatched`` is durable (one fsync per step of
    a chain, as the step-checkpointing peers do); by default an agent free of
    side effects starts at once and its dispatch is committed meanwhile.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        clock: Callable[[], datetime] = utcnow,
        lease_ttl_s: float = 30.0,
        lease_wait_s: float = 0.0,
        durable_dispatch: bool = False,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.lease_ttl_s = lease_ttl_s
        self.lease_wait_s = lease_wait_s
        self.durable_dispatch = durable_dispatch
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        #: Runs this orchestrator is driving right now (a lease is per process,
        #: so two calls of one orchestrator must not drive one run together).
        self._live: dict[str, _Slot] = {}

    # -- public API -------------------------------------------------------

    async def start(
        self, workflow: Workflow, goal: BaseModel | dict[str, Any], *, run_id: str | None = None
    ) -> RunResult:
        """Start a run of ``workflow`` for ``goal`` and drive it as far as it can go.

        Returns when the run completed, failed, or waits on an escalation.
        """
        if workflow.planner_fn is None:
            raise WorkflowDefinitionError(
                f"Workflow '{workflow.name}' has no planner; declare one with @wf.planner."
            )
        if isinstance(goal, BaseModel):
            goal = goal.model_dump(mode="json")
        try:
            goal_doc = workflow.goal.model_validate(goal).model_dump(mode="json")
        except ValidationError as exc:
            raise WorkflowDefinitionError(
                f"The goal does not satisfy {workflow.goal.__name__}: "
                + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                            for e in exc.errors(include_url=False))
            ) from exc
        run_id = run_id or uuid.uuid4().hex[:12]
        fact = ev.RunStarted(
            workflow=workflow.name, workflow_ref=workflow.ref, goal=goal_doc,
            started_at=self.clock().isoformat(), max_concurrency=workflow.max_concurrency,
            max_event_bytes=self.store.max_event_bytes,
        )
        driver = _Driver(self, workflow, RunState(run_id=run_id), seq=0)
        async with self._lease(run_id, driver):
            await driver.run([fact])
        return driver.result()

    async def resume(self, run_id: str, workflow: Workflow | None = None) -> RunResult:
        """Continue a run that was interrupted (crash, kill -9) or is waiting.

        Tasks that succeeded are not run again. An attempt with no recorded
        outcome is re-dispatched with the same idempotency key if its agent is
        idempotent or free of side effects, and escalated as "outcome unknown"
        otherwise.
        """
        async with self._lease(run_id) as slot:
            state = await load_run_state(self.store, run_id)
            wf = workflow or load_workflow(state.workflow_ref, state.workflow)
            driver = slot.bind(_Driver(self, wf, state, seq=state.seq))
            if state.status.terminal:
                return driver.result()
            await driver.run([ev.RunResumed(by=self.owner)], resuming=True)
        return driver.result()

    async def resolve(
        self,
        run_id: str,
        task_id: str,
        *,
        output: BaseModel | dict[str, Any] | None = None,
        retry: bool = False,
        abandon: bool = False,
        by: str = "api",
        note: str = "",
        workflow: Workflow | None = None,
    ) -> RunResult:
        """Settle an escalated task, then drive the run on.

        Exactly one of ``output`` (validated against the task's output
        contract), ``retry`` or ``abandon``. An invalid resolution raises
        :class:`ResolutionError` and appends nothing.
        """
        chosen = [name for name, on in
                  (("output", output is not None), ("retry", retry), ("abandon", abandon)) if on]
        if len(chosen) != 1:
            raise ResolutionError(
                "Resolve needs exactly one of output=, retry=True or abandon=True "
                f"(got {', '.join(chosen) or 'none'})."
            )
        logged: dict[str, Any] | None = None
        if output is not None:
            raw = output.model_dump(mode="json") if isinstance(output, BaseModel) else output
            logged = as_logged(raw)
        async with self._lease(run_id) as slot:
            state = await load_run_state(self.store, run_id)
            wf = workflow or load_workflow(state.workflow_ref, state.workflow)
            driver = slot.bind(_Driver(self, wf, state, seq=state.seq))
            facts: list[ev.Event] = []
            if any(t.outstanding for t in state.tasks.values()):
                # The process that drove it died: settle its lost attempts too.
                facts.append(ev.RunResumed(by=self.owner))
            facts.append(ev.EscalationResolved(
                task_id=task_id, action=chosen[0], by=by, output=logged, note=note))
            await driver.run(facts, resuming=True, strict=True)
        return driver.result()

    async def state(self, run_id: str, at: int | None = None) -> RunState:
        """The run's state rebuilt from its log, after event ``at`` (default: the last)."""
        return await load_run_state(self.store, run_id, at)

    async def cancel(self, run_id: str, *, by: str = "api") -> RunResult:
        """Cancel a run that is not finished; nothing more is dispatched.

        A run this orchestrator is driving is cancelled in place (its agents
        are cancelled, ``start`` returns ``cancelled``); a run driven by
        another live process is refused with :class:`RunBusyError`.
        """
        live = self._live.get(run_id)
        if live is not None and live.driver is not None:
            return await live.driver.cancel(by)
        async with self._lease(run_id) as slot:
            state = await load_run_state(self.store, run_id)
            wf = load_workflow(state.workflow_ref, state.workflow, required=False)
            driver = slot.bind(_Driver(self, wf, state, seq=state.seq))
            try:
                if not state.status.terminal:
                    await driver.commit(advance(state, ev.RunCancelled(by=by), driver.wf))
            finally:
                driver.stopped.set()  # nobody runs this driver: a second cancel must not wait
        return driver.result()

    # -- leases -----------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _lease(self, run_id: str, driver: _Driver | None = None) -> AsyncIterator[_Slot]:
        """Hold the run's lease (renewed) while a driver works on it.

        If the lease is lost (another process took the run over after our
        renewals failed for a whole ttl), the driving task is stopped and
        :class:`RunBusyError` raised: two processes never drive one run.
        """
        if run_id in self._live:
            raise RunBusyError(run_id)
        # Reserved before the first await, so two calls cannot both get past the check.
        slot = _Slot(self, run_id)
        self._live[run_id] = slot
        try:
            await self._acquire(run_id)
        except BaseException:
            del self._live[run_id]
            raise
        if driver is not None:
            slot.bind(driver)
        current = asyncio.current_task()
        lost = asyncio.Event()
        renewer = asyncio.create_task(self._renew(run_id, lost, current))
        try:
            yield slot
        except asyncio.CancelledError:
            if lost.is_set():
                if current is not None:
                    current.uncancel()  # the cancel was ours: report the lost lease instead
                raise RunBusyError(run_id) from None
            raise
        finally:
            if self._live.get(run_id) is slot:
                del self._live[run_id]
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await renewer
            if not lost.is_set():
                await self.store.release_lease(run_id, self.owner)
            if _cancelled_from_outside() and not lost.is_set():
                raise asyncio.CancelledError  # one swallowed while awaiting the renewer

    async def _acquire(self, run_id: str) -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.lease_wait_s
        while not await self.store.try_lease(run_id, self.owner, self.lease_ttl_s):
            # A crashed owner's lease lapses after its ttl; a live one keeps renewing.
            if loop.time() >= give_up:
                raise RunBusyError(run_id)
            await asyncio.sleep(min(0.05, self.lease_ttl_s / 4))

    async def _renew(
        self, run_id: str, lost: asyncio.Event, holder: asyncio.Task[Any] | None
    ) -> None:
        loop = asyncio.get_running_loop()
        held_until = loop.time() + self.lease_ttl_s
        while True:
            await asyncio.sleep(self.lease_ttl_s / 3)
            try:
                renewed = await self.store.try_lease(run_id, self.owner, self.lease_ttl_s)
            except Exception:  # a busy or dropped store: try again until the ttl runs out
                log.warning("Could not renew the lease on run %s; retrying.", run_id,
                            exc_info=True)
                renewed = loop.time() < held_until
            else:
                if renewed:
                    held_until = loop.time() + self.lease_ttl_s
            if not renewed:
                log.error("Lost the lease on run %s; stopping so that only one process "
                          "drives it.", run_id)
                lost.set()
                if holder is not None:
                    holder.cancel()
                return


class _Slot:
    """A run's place in an orchestrator's registry of live drivers."""

    def __init__(self, orch: Orchestrator, run_id: str) -> None:
        self.orch = orch
        self.run_id = run_id
        self.driver: _Driver | None = None

    def bind(self, driver: _Driver) -> _Driver:
        self.driver = driver
        return driver


def as_logged(value: Any) -> Any:
    """``value`` as the log will hold it (NaN and infinities become null).

    Decisions are taken on exactly what replay will read back, so the log
    stays the truth.
    """
    return msgspec.json.decode(msgspec.json.encode(value))


class _Driver:
    """One run being driven: its state, its log position, its in-flight work.

    Commits are pipelined: at most one append is in flight, and everything
    decided meanwhile goes into the next one (group commit). An action that
    can do harm if its event is lost — calling a side-effecting agent, asking
    an escalation handler — waits until its event is durable; calling an agent
    free of side effects, the planner or a backoff timer starts at once,
    overlapping the fsync (if the process dies first, the log simply shows no
    dispatch, and resume dispatches again).
    """

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

    async def run(
        self, facts: list[ev.Event], *, resuming: bool = False, strict: bool = False
    ) -> None:
        # Escalations already in the log may be re-asked; new ones wait until durable.
        logged_escalations = list(self.state.escalations)
        try:
            self.queue(self.decide(facts, strict=strict))
            if resuming:
                self.rearm(logged_escalations)
            self.arm_deadline()
            while self.work or self.pending or self.committing is not None:
                if not self.work and self.committing is None:
                    # Nothing to overlap with: commit inline, saving a task hand-off.
                    events, self.pending = self.pending, []
                    await self.commit(events)
                    self.perform(events, durable=True)
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
        finally:
            await self.stop_all()
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
                events.extend(advance(self.state, fact, self.wf))
            except ResolutionError:
                if strict:
                    raise
                log.warning("Dropped a resolution that no longer applies: %r", fact)
        return events

    def queue(self, events: list[ev.Event]) -> None:
        """Take decided events into the next commit; start what is safe to start now."""
        if not events:
            return
        self.pending.extend(events)
        self.perform(events, durable=False)

    def flush(self) -> None:
        if self.committing is None and self.pending:
            self.in_commit, self.pending = self.pending, []
            self.committing = asyncio.create_task(self.commit(self.in_commit, count=False))
            self.committing.add_done_callback(self.finished.put_nowait)

    async def commit(self, events: list[ev.Event], *, count: bool = True) -> None:
        if not events:
            return
        await self.orch.store.append(
            self.state.run_id,
            [NewEvent(type=e.type, data=ev.encode_event(e)) for e in events],
            expected_seq=self.seq,
            status=self.state.status.value,
            label=self.state.workflow,
            at=self.orch.clock(),
        )
        if count:
            self.seq += len(events)

    def spawn(self, coro: Coroutine[Any, Any, ev.Event | None]) -> None:
        self.order += 1
        work = asyncio.create_task(coro)
        self.work[work] = self.order
        work.add_done_callback(self.finished.put_nowait)

    def perform(self, events: list[ev.Event], *, durable: bool) -> None:
        """Start what the events describe: the harmless at once, the rest once durable."""
        agents = self.wf.agents
        tasks = self.state.tasks
        strict = self.orch.durable_dispatch
        for event in events:
            kind = type(event)  # exact types: events are final classes, and this is hot
            if kind is ev.TaskDispatched:
                dispatched: ev.TaskDispatched = event  # type: ignore[assignment]
                if durable == (strict or agents[tasks[dispatched.task_id].agent].side_effect):
                    self.spawn(self.call_agent(dispatched))
            elif durable:
                if kind is ev.TaskEscalated and self.wf.escalation_handler:
                    self.spawn(self.ask_handler(event.task_id))  # type: ignore[attr-defined]
            elif kind is ev.RunStarted:
                self.spawn(self.call_planner())
            elif kind is ev.RetryScheduled:
                retry: ev.RetryScheduled = event  # type: ignore[assignment]
                self.spawn(self.timer(retry.task_id, retry.delay_s))
        if self.state.status.terminal:
            for work in self.work:
                work.cancel()

    def rearm(self, logged_escalations: list[str]) -> None:
        """After a resume: timers and handlers whose process is gone."""
        state = self.state
        if state.status is RunStatus.PLANNING:
            self.spawn(self.call_planner())
        for task in state.tasks.values():
            if task.status is TaskStatus.RETRY_WAIT:
                self.spawn(self.timer(task.id, 0.0))
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
        if _cancelled_from_outside():
            # A cancel of this task that landed during the clean-up above was
            # swallowed with the work's own: deliver it.
            raise asyncio.CancelledError

    # -- the outside world --------------------------------------------------

    async def call_agent(self, dispatched: ev.TaskDispatched) -> ev.Event:
        task_id, attempt = dispatched.task_id, dispatched.attempt
        spec = self.wf.spec(self.state.tasks[task_id].agent)
        ctx = AgentContext(
            run_id=self.state.run_id, task_id=task_id, attempt=attempt,
            idempotency_key=dispatched.idempotency_key,
        )

        def failed(error_type: str, names: list[str], message: str, *, timed_out: bool = False,
                   ) -> ev.AgentFailed:
            return ev.AgentFailed(
                task_id=task_id, attempt=attempt, error_type=error_type, error_types=names,
                message=message[:2000], timed_out=timed_out, tokens=ctx.tokens, cost=ctx.cost,
            )

        try:
            inp = spec.input.model_validate(dispatched.input)
        except ValidationError as exc:
            return failed("ledgerflow.InputContractError", _PERMANENT_NAMES,
                          f"the dispatched input does not satisfy {spec.input.__name__}: {exc}")
        timeout = asyncio.timeout(dispatched.timeout_s)
        try:
            async with timeout:
                result = await spec.fn(inp, ctx)
        except TimeoutError as exc:
            if timeout.expired():
                return failed("builtins.TimeoutError", exception_names(TimeoutError),
                              f"{dispatched.timeout_s:g}s", timed_out=True)
            return failed(exception_names(type(exc))[0], exception_names(type(exc)), str(exc))
        except asyncio.CancelledError as exc:
            if _cancelled_from_outside():
                raise
            # The agent (or a library inside it) raised CancelledError itself.
            names = exception_names(type(exc))
            return failed(names[0], names, str(exc) or "the agent raised CancelledError")
        except Exception as exc:  # every agent error becomes a recorded fact
            names = exception_names(type(exc))
            return failed(names[0], names, str(exc) or type(exc).__name__)
        raw = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
        try:
            encoded = msgspec.json.encode(raw)
        except (TypeError, msgspec.EncodeError) as exc:
            return failed("ledgerflow.UnloggableOutput", ["ledgerflow.UnloggableOutput"],
                          f"the output cannot be recorded as JSON: {exc}")
        size = len(encoded)
        limit = self.orch.store.max_event_bytes - _ENVELOPE_ROOM
        if size > limit:
            return failed("ledgerflow.OutputTooLarge", ["ledgerflow.OutputTooLarge"],
                          f"the output is {size:,} bytes, over the {limit:,}-byte limit of "
                          "one logged event")
        # Decide on exactly what the log will hold (NaN becomes null there).
        raw = msgspec.json.decode(encoded)
        return ev.OutputReceived(
            task_id=task_id, attempt=attempt, output=raw, tokens=ctx.tokens, cost=ctx.cost)

    async def call_planner(self) -> ev.Event:
        planner = self.wf.planner_fn
        assert planner is not None
        ctx = AgentContext(
            run_id=self.state.run_id, task_id="$planner", attempt=1,
            idempotency_key=idempotency_key(self.state.run_id, "$planner"),
        )
        try:
            goal = self.wf.goal.model_validate(self.state.goal)
            async with asyncio.timeout(self.wf.planner_timeout_s):
                plan = await planner(goal, ctx)
        except TimeoutError:
            return ev.PlanProposed(error=f"timed out after {self.wf.planner_timeout_s:g}s")
        except asyncio.CancelledError as exc:
            if _cancelled_from_outside():
                raise
            return ev.PlanProposed(error=f"CancelledError: {exc or 'raised by the planner'}")
        except Exception as exc:  # a planner error is a recorded fact, not a crash
            return ev.PlanProposed(error=f"{type(exc).__name__}: {exc}")
        raw = plan.model_dump(mode="json") if isinstance(plan, BaseModel) else plan
        try:
            logged = as_logged(raw)
        except (TypeError, msgspec.EncodeError) as exc:
            return ev.PlanProposed(error=f"the plan cannot be recorded as JSON: {exc}")
        return ev.PlanProposed(plan=logged)

    async def timer(self, task_id: str, delay_s: float) -> ev.Event:
        await asyncio.sleep(delay_s)
        return ev.TimerFired(task_id=task_id)

    async def ask_handler(self, task_id: str) -> ev.Event | None:
        handler = self.wf.escalation_handler
        assert handler is not None
        task = self.state.tasks[task_id]
        escalation = self.state.escalations.get(task_id)
        if escalation is None:
            return None
        request = EscalationRequest(
            run_id=self.state.run_id, task_id=task_id, agent=task.agent, kind=escalation.kind,
            reason=escalation.reason, candidate=escalation.candidate, input=task.input,
        )
        try:
            resolution = await handler(request)
        except Exception:
            log.exception("The escalation handler failed on task %s; leaving it open.", task_id)
            return None
        if resolution is None:
            return None
        if not isinstance(resolution, Resolution):
            log.warning("The escalation handler returned %s, not a Resolution or None, for "
                        "task %s; leaving the escalation open.", type(resolution).__name__,
                        task_id)
            return None
        output = resolution.output
        if isinstance(output, BaseModel):
            output = output.model_dump(mode="json")
        if output is not None:
            try:
                output = as_logged(output)
            except (TypeError, msgspec.EncodeError):
                log.warning("The escalation handler's output for task %s cannot be logged as "
                            "JSON; leaving the escalation open.", task_id)
                return None
        if resolution.action == "output":
            verdict = validate_output(self.wf.spec(task.agent).output, output, task_id=task_id)
            if not verdict.ok:
                log.warning("The escalation handler's output for task %s is invalid (%s); "
                            "leaving the escalation open.", task_id, "; ".join(verdict.errors))
                return None
        name = getattr(handler, "__name__", "handler")
        return ev.EscalationResolved(
            task_id=task_id, action=resolution.action, by=f"handler:{name}", output=output,
            note=resolution.note,
        )

    def result(self) -> RunResult:
        state = self.state
        outputs: dict[str, BaseModel] = {}
        for task in state.tasks.values():
            if task.status is TaskStatus.SUCCEEDED and task.output is not None:
                spec = self.wf.agents.get(task.agent)
                if spec is not None:
                    outputs[task.id] = spec.output.model_validate(task.output)
        return RunResult(
            run_id=state.run_id, status=state.status.value, outputs=outputs,
            reason=state.reason, state=state,
        )
