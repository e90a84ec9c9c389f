"""The imperative shell's front door: start, resume, resolve and cancel runs.

The :class:`Orchestrator` owns the I/O. Every operation goes through one
prelude (:meth:`Orchestrator._drive`): take the run's lease, load its state,
bind a :class:`~ledgerflow.machines.driver.Driver`, and drive it with the
operation's facts. The driver asks :func:`ledgerflow.machines.advance` what
follows from each fact, appends the events in one transaction, and only then
performs what they describe: a ``TaskDispatched`` is durable before a
side-effecting agent is called, so a crash can never hide a side effect.

Example::

    async with open_store("runs.db") as store:
        orch = Orchestrator(store)
        run = await orch.start(wf, TripGoal(destination="Lisbon", passengers=2))
        print(run.status, run.outputs["book"])
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from pydantic import BaseModel, ValidationError

from ledgerflow.contracts.secrets import dump_revealed
from ledgerflow.eventstore import EventStore
from ledgerflow.machines import events as ev
from ledgerflow.machines.driver import Driver
from ledgerflow.machines.errors import (
    InvalidRunIdError,
    ResolutionError,
    RunBusyError,
    RunExistsError,
    UnloggableValueError,
    WorkflowDefinitionError,
)
from ledgerflow.machines.flow_slots import PoolSlots
from ledgerflow.machines.fsm import RunStatus
from ledgerflow.machines.lease_guard import HeldLease
from ledgerflow.machines.leasing import hold_lease, new_owner
from ledgerflow.machines.loader import load_workflow
from ledgerflow.machines.observers import RunObserver
from ledgerflow.machines.recording import Recording
from ledgerflow.machines.results import RunResult
from ledgerflow.machines.run_loading import load_run_state
from ledgerflow.machines.secret_keeping import SecretKeeper, must_keep_secrets
from ledgerflow.machines.snapshots import DEFAULT_SNAPSHOT_EVERY
from ledgerflow.machines.state import RunState
from ledgerflow.machines.values import ENVELOPE_ROOM, as_logged
from ledgerflow.machines.workflow import AgentSpec, Workflow

__all__ = ["Orchestrator", "RunResult", "load_run_state"]

#: The facts an operation drives with, given the run's loaded state.
Facts = Callable[[RunState], list[ev.Event]]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Orchestrator:
    """Drives runs of workflows against an event store.

    ``clock`` stamps the events (recorded, never re-read on replay);
    ``lease_ttl_s`` is how long a crashed process keeps others from taking
    its runs over; ``lease_wait_s`` is how long to wait for a busy run's
    lease before refusing with :class:`RunBusyError` (``math.inf``: wait as
    long as it takes). A lease whose owner is a process of this host that is
    gone is taken over at once (``take_over_dead_owners=False`` to always
    wait for the ttl; see :func:`ledgerflow.machines.leasing.lease_owner_is_gone`).
    With ``durable_dispatch=True`` every agent, not only a side-effecting one,
    starts only once its ``TaskDispatched`` is durable (one fsync per step of
    a chain, as the step-checkpointing peers do); by default an agent free of
    side effects starts at once and its dispatch is committed meanwhile.
    With a ``recording`` (:class:`~ledgerflow.machines.recording.Recording`)
    every journaled step is answered from a recorded run, none is called: an
    offline run against last month's real model answers. With
    ``spread_tasks=True`` (what a :class:`~ledgerflow.machines.worker.Worker`
    sets) the attempts of a run are offered to the store's worker pool
    instead of run in this process (:mod:`ledgerflow.machines.task_exchange`).
    ``observers`` are told of every batch of events once it is durable
    (:class:`~ledgerflow.machines.observers.RunObserver`: telemetry, progress).
    ``snapshot_every`` events, a snapshot of the run's state is stored beside
    its log, so a resume folds only the events after it (0: never;
    :mod:`ledgerflow.machines.snapshots`).

    Example::

        orch = Orchestrator(store, lease_wait_s=60)   # `ledgerflow resume --wait 60`
        run = await orch.resume(run_id, wf)
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
        take_over_dead_owners: bool = True,
        recording: Recording | None = None,
        spread_tasks: bool = False,
        observers: Sequence[RunObserver] = (),
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
    ) -> None:
        self.store = store
        if isinstance(snapshot_every, bool) or not isinstance(snapshot_every, int) \
                or snapshot_every < 0:
            raise ValueError(f"snapshot_every must be an int >= 0, not {snapshot_every!r}")
        #: A state snapshot every this many events (0: none).
        self.snapshot_every = snapshot_every
        #: Told of every durable batch of events (:mod:`ledgerflow.machines.observers`).
        self.observers: list[RunObserver] = list(observers)
        self.spread_tasks = spread_tasks
        #: Called when a driver of this orchestrator offered attempts to the pool,
        #: and when it answered facts the pool posted (a worker wakes its executor).
        self.on_offer: Callable[[], None] | None = None
        self.on_answer: Callable[[], None] | None = None
        #: Attempts this orchestrator runs itself at most (None: no bound); with
        #: ``spread_tasks`` the rest are offered to the pool (by default, all of
        #: them; a Worker keeps its ``task_concurrency`` for its own runs first).
        self.local_capacity: int | None = 0 if spread_tasks else None
        self.local_running = 0
        self.local_total = 0
        #: The pool's slots (set by a Worker): limits inside agents hold pool-wide.
        self.slots: PoolSlots | None = None
        #: ``max_concurrent`` of each agent within this orchestrator, by (workflow, agent).
        self._agent_slots: dict[tuple[str, str], asyncio.Semaphore] = {}
        self.clock = clock
        self.lease_ttl_s = lease_ttl_s
        self.lease_wait_s = lease_wait_s
        self.durable_dispatch = durable_dispatch
        self.owner = owner or new_owner()
        self.take_over_dead_owners = take_over_dead_owners
        #: Answers every journaled step from a recorded run (offline runs).
        self.recording = recording
        #: Runs this orchestrator is driving right now (a lease is per process,
        #: so two calls of one orchestrator must not drive one run together).
        self._live: dict[str, _Slot] = {}

    # -- public API -------------------------------------------------------

    async def start(
        self, workflow: Workflow, goal: BaseModel | dict[str, Any], *, run_id: str | None = None
    ) -> RunResult:
        """Start a run of ``workflow`` for ``goal`` and drive it as far as it can go.

        Returns when the run completed, failed, or waits on an escalation. A
        goal the log cannot hold (NaN, nesting over 200 deep, a lone
        surrogate, an int over 4,300 digits) raises
        :class:`UnloggableValueError` and nothing is recorded.
        """
        goal_doc = _checked_goal(workflow, goal)
        run_id = new_run_id(run_id)
        goal_doc = await self._kept_goal(run_id, workflow, goal_doc)
        fact = self._started(workflow, goal_doc)
        return await self._drive(run_id, workflow, lambda state: [fact],
                                 new_state=RunState(run_id=run_id), operation="start")

    async def submit(
        self, workflow: Workflow, goal: BaseModel | dict[str, Any], *, run_id: str | None = None
    ) -> str:
        """Queue a run of ``workflow`` for ``goal`` for the worker pool; its run id.

        The run is recorded as queued (``RunSubmitted``) and not driven here: a
        :class:`~ledgerflow.machines.worker.Worker` (``ledgerflow worker``)
        claims and starts it. The goal is checked as :meth:`start` checks it.

        Example::

            run_id = await Orchestrator(store).submit(wf, TripGoal(destination="Lisbon"))
        """
        goal_doc = _checked_goal(workflow, goal)
        run_id = new_run_id(run_id)
        goal_doc = await self._kept_goal(run_id, workflow, goal_doc)
        fact = ev.RunSubmitted(workflow=workflow.name, workflow_ref=workflow.ref, goal=goal_doc,
                               submitted_at=self.clock().isoformat())
        await self._drive(run_id, workflow, lambda state: [fact],
                          new_state=RunState(run_id=run_id), operation="submit")
        return run_id

    async def _kept_goal(self, run_id: str, workflow: Workflow, goal_doc: dict[str, Any]
                         ) -> dict[str, Any]:
        """The goal as the log will hold it: its secrets in the vault, small enough."""
        goal_doc = await SecretKeeper(self.store).keep(run_id, goal_doc, workflow.goal)
        must_fit_one_event(goal_doc, self.store.max_event_bytes, what="the goal",
                           fix="send a smaller goal (or open the store with a larger "
                               "max_event_bytes)")
        return goal_doc

    def _started(self, workflow: Workflow, goal_doc: dict[str, Any]) -> ev.RunStarted:
        return ev.RunStarted(
            workflow=workflow.name, workflow_ref=workflow.ref, goal=goal_doc,
            started_at=self.clock().isoformat(), max_concurrency=workflow.max_concurrency,
            max_event_bytes=self.store.max_event_bytes, log_format=ev.LOG_FORMAT,
        )

    async def resume(self, run_id: str, workflow: Workflow | None = None) -> RunResult:
        """Continue a run that was interrupted (crash, kill -9) or is waiting.

        Tasks that succeeded are not run again. An attempt with no recorded
        outcome is re-dispatched with the same idempotency key if its agent is
        idempotent or free of side effects, and escalated as "outcome unknown"
        otherwise. A queued run (:meth:`submit`) is started.
        """
        def facts(state: RunState) -> list[ev.Event]:
            if state.status is RunStatus.QUEUED and not state.started_at:
                wf = workflow or load_workflow(state.workflow_ref, state.workflow)
                return [self._started(wf, state.goal)]
            if state.status.terminal:
                return []
            # Attempts lost before this drive are settled first; then the
            # resolutions queued for the pool are applied by whoever drives the run.
            return [ev.RunResumed(by=self.owner), *(
                ev.EscalationResolved(task_id=r.task_id, action=r.action, by=r.by,
                                      output=r.output, note=r.note)
                for r in state.requested.values())]

        return await self._drive(run_id, workflow, facts, resuming=True)

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
        """Settle an escalated task, then drive the run on (a pool run: queue it for a worker).

        Exactly one of ``output`` (validated against the task's output
        contract), ``retry`` or ``abandon``. An invalid resolution, or one the
        log cannot hold (NaN, ...), raises :class:`ResolutionError` and
        appends nothing. A run queued with :meth:`submit` is not driven by the
        caller: the resolution is recorded (``ResolutionRequested``), the run
        goes back on the queue (status ``queued``), and the worker that claims
        it applies the resolution and drives it on.
        """
        chosen = [name for name, on in
                  (("output", output is not None), ("retry", retry), ("abandon", abandon)) if on]
        if len(chosen) != 1:
            raise ResolutionError(
                "Resolve needs exactly one of output=, retry=True or abandon=True "
                f"(got {', '.join(chosen) or 'none'})."
            )
        logged: dict[str, Any] | None = None
        try:
            if output is not None:
                logged = as_logged(_revealed(output),
                                   what=f"the output given for task '{task_id}'")
                must_fit_one_event(logged, self.store.max_event_bytes,
                                   what=f"the output given for task '{task_id}'",
                                   fix="give a smaller output")
            as_logged([by, note], what="the resolution's by= and note=")
        except UnloggableValueError as exc:
            raise ResolutionError(str(exc)) from exc
        if logged is not None:
            logged = await self._kept_resolution(run_id, task_id, logged, workflow)

        def facts(state: RunState) -> list[ev.Event]:
            if state.submitted_at:
                # A pool run: queue the resolution for a worker instead of driving here.
                return [ev.ResolutionRequested(
                    task_id=task_id, action=chosen[0], by=by, output=logged, note=note)]
            found: list[ev.Event] = []
            if any(t.outstanding for t in state.tasks.values()):
                # The process that drove it died: settle its lost attempts too.
                found.append(ev.RunResumed(by=self.owner))
            found.append(ev.EscalationResolved(
                task_id=task_id, action=chosen[0], by=by, output=logged, note=note))
            return found

        return await self._drive(run_id, workflow, facts, resuming=True, strict=True,
                                 operation="resolve")

    async def _kept_resolution(self, run_id: str, task_id: str, output: dict[str, Any],
                               workflow: Workflow | None) -> dict[str, Any]:
        """A resolution's output with the secrets of its task's contract in the vault.

        Which contract applies is the escalated task's agent's: the run is read
        for it (the drive that follows checks everything else).
        """
        state = await load_run_state(self.store, run_id)
        task = state.tasks.get(task_id)
        if task is None:
            return output  # the decider refuses it, naming the tasks there are
        wf = workflow or load_workflow(state.workflow_ref, state.workflow)
        spec = wf.agents.get(task.agent)
        if spec is None or not must_keep_secrets(spec.output):
            return output
        kept: dict[str, Any] = await SecretKeeper(self.store).keep(run_id, output, spec.output)
        return kept

    async def state(self, run_id: str, at: int | None = None) -> RunState:
        """The run's state rebuilt from its log, after event ``at`` (default: the last)."""
        return await load_run_state(self.store, run_id, at)

    async def cancel(self, run_id: str, *, by: str = "api") -> RunResult:
        """Cancel a run that is not finished; nothing more is dispatched.

        A run this orchestrator is driving is cancelled in place (its agents
        are cancelled, ``start`` returns ``cancelled``), also while that call
        is still taking the lease and loading the run; a run driven by
        another live process is refused with :class:`RunBusyError`.
        """
        live = self._live.get(run_id)
        if live is not None:
            # Our own call may be in its prelude: wait until it drives or gives up.
            await live.settled.wait()
            if live.driver is not None:
                return await live.driver.cancel(by)

        def facts(state: RunState) -> list[ev.Event]:
            return [] if state.status.terminal else [ev.RunCancelled(by=by)]

        return await self._drive(run_id, None, facts, workflow_required=False,
                                 operation="cancel")

    def agent_slot(self, wf: Workflow, spec: AgentSpec) -> asyncio.Semaphore | None:
        """The agent's ``max_concurrent`` within this orchestrator (None: no limit)."""
        if spec.max_concurrent is None:
            return None
        key = (wf.name, spec.name)
        slot = self._agent_slots.get(key)
        if slot is None:
            slot = self._agent_slots[key] = asyncio.Semaphore(spec.max_concurrent)
        return slot

    def local_room(self) -> bool:
        """Whether one more attempt may run in this process now."""
        return self.local_capacity is None or self.local_running < self.local_capacity

    def count_local(self, call: asyncio.Task[Any]) -> None:
        """An attempt runs in this process until ``call`` is done (cancelled included)."""
        self.local_running += 1
        self.local_total += 1

        def done(_: asyncio.Task[Any]) -> None:
            self.local_running -= 1

        call.add_done_callback(done)

    def wake_exchange(self, run_id: str) -> None:
        """A fact was posted for ``run_id``: if this orchestrator drives it, look now."""
        slot = self._live.get(run_id)
        if slot is not None and slot.driver is not None and slot.driver.exchange is not None:
            slot.driver.exchange.wake.set()

    # -- the one prelude ----------------------------------------------------

    async def _drive(
        self,
        run_id: str,
        workflow: Workflow | None,
        facts: Facts,
        *,
        new_state: RunState | None = None,
        resuming: bool = False,
        strict: bool = False,
        workflow_required: bool = True,
        operation: str = "resume",
    ) -> RunResult:
        """Take the lease, load the state, bind a driver, drive it with ``facts(state)``."""
        async with self._lease(run_id, operation) as slot:
            if new_state is not None and await self.store.last_seq(run_id):
                raise RunExistsError(run_id)
            # Chaining onto an edited log would vouch for the edit: each event's link is
            # checked before it is folded (an edited event may not even fold), so the
            # refusal is typed, in the one read of the log.
            state = new_state or await load_run_state(self.store, run_id, check_chain=True)
            wf = workflow or load_workflow(
                state.workflow_ref, state.workflow, required=workflow_required)
            driver = slot.bind(Driver(self, wf, state, seq=state.seq))
            todo = facts(state)
            if todo:
                await driver.run(todo, resuming=resuming, strict=strict)
            else:
                driver.stopped.set()  # nobody runs this driver: a cancel must not wait on it
        return driver.result()

    @contextlib.asynccontextmanager
    async def _lease(self, run_id: str, operation: str) -> AsyncIterator[_Slot]:
        """Hold the run's lease while a driver works on it (see :mod:`.leasing`)."""
        if run_id in self._live:
            raise RunBusyError(run_id, owner=self.owner, operation=operation)
        # Reserved before the first await, so two calls cannot both get past the check.
        slot = _Slot(run_id)
        self._live[run_id] = slot
        try:
            async with hold_lease(self.store, run_id, self.owner, ttl_s=self.lease_ttl_s,
                                  wait_s=self.lease_wait_s,
                                  take_over=self.take_over_dead_owners,
                                  operation=operation) as held:
                slot.fence = held.fence
                slot.lease = held
                yield slot
        finally:
            slot.settled.set()
            if self._live.get(run_id) is slot:
                del self._live[run_id]


#: What a run id given to start/submit may be (see InvalidRunIdError).
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def new_run_id(given: str | None) -> str:
    """The id of a new run: ``given`` if it is one a run may have, else a fresh one if None."""
    if given is None:
        return uuid.uuid4().hex[:12]
    if not isinstance(given, str) or _RUN_ID.fullmatch(given) is None:
        raise InvalidRunIdError(str(given))
    return given


def must_fit_one_event(value: Any, max_event_bytes: int, *, what: str, fix: str) -> None:
    """Refuse a value too large for the one event that will carry it, naming it."""
    size = len(msgspec.json.encode(value))
    limit = max_event_bytes - ENVELOPE_ROOM
    if size > limit:
        raise UnloggableValueError(
            what, f"it is {size:,} bytes as JSON, over the store's limit of {limit:,} bytes "
            "for one event", fix)


def _checked_goal(workflow: Workflow, goal: BaseModel | dict[str, Any]) -> dict[str, Any]:
    """The goal as the log will hold it, checked against the workflow's goal model."""
    if workflow.planner_fn is None:
        raise WorkflowDefinitionError(
            f"Workflow '{workflow.name}' has no planner; declare one with @wf.planner."
        )
    # Checked before pydantic sees it too: a 100,000-deep dict would overflow its stack.
    raw = as_logged(_revealed(goal), what="the goal")
    try:
        validated = workflow.goal.model_validate(raw)
    except ValidationError as exc:
        raise WorkflowDefinitionError(
            f"The goal does not satisfy {workflow.goal.__name__}: "
            + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                        for e in exc.errors(include_url=False))
        ) from exc
    logged: dict[str, Any] = as_logged(_revealed(validated), what="the goal")
    return logged


def _revealed(value: Any) -> Any:
    """A model with secret fields as data holding their values (pydantic would dump
    ``**********``); anything else as it is, for :func:`as_logged` to check."""
    if isinstance(value, BaseModel) and must_keep_secrets(type(value)):
        return dump_revealed(value)
    return value


class _Slot:
    """A run's place in an orchestrator's registry of live drivers."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.driver: Driver | None = None
        #: The fence of the lease held for the run: every append carries it.
        self.fence: int | None = None
        #: The lease itself: side effects confirm it is certainly held first.
        self.lease: HeldLease | None = None
        #: Set once a driver is bound, or the call gave up before binding one.
        self.settled = asyncio.Event()

    def bind(self, driver: Driver) -> Driver:
        driver.fence = self.fence
        driver.lease = self.lease
        self.driver = driver
        self.settled.set()
        return driver
