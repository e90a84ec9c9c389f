"""The pool's side of the task exchange: claim an offered attempt, run the agent, post its facts.

Any worker may run an attempt of a run another worker owns. It reads the
run's log (folded once per run and caught up incrementally, so a 200-task
fan-out folds each event once per worker, not once per task), calls the agent
exactly as the owner would (same input, idempotency key, timeout, journal),
and posts each step fact and then the outcome to the exchange. A step is
handed back to the agent only once the owner answered that it is durable in
the run's log; a refusal (the attempt timed out, the run ended) or a lost
claim ends the attempt with :class:`AttemptClosedError`.

A claim has a lease that the executor renews; if the executor dies, another
claims the attempt again with a higher token and continues it under the
rules of resume: its recorded steps are served, a side effect with no
recorded outcome escalates, and an agent that is not safe to repeat is not
run again (:data:`~ledgerflow.machines.stable_names.EXECUTOR_LOST`).

Example::

    executor = TaskExecutor(store, {"travel": wf}, owner="w1", ttl_s=30)
    claim = await executor.claim()
    if claim is not None:
        await executor.execute(claim)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from ledgerflow.eventstore import AgentLimit, EventStore, TaskClaim, TaskClaimLostError
from ledgerflow.machines import calls
from ledgerflow.machines import events as ev
from ledgerflow.machines.effect_claims import claim_shared_effect
from ledgerflow.machines.errors import AttemptClosedError, PermanentError
from ledgerflow.machines.evolve import evolve
from ledgerflow.machines.flow_slots import PoolSlots
from ledgerflow.machines.lease_guard import (
    fencing_token_of,
    lease_certainly_held,
    lease_clock,
    side_effect_margin_s,
)
from ledgerflow.machines.origin import agent_failed
from ledgerflow.machines.secret_keeping import SecretKeeper
from ledgerflow.machines.stable_names import EXECUTOR_LOST, exception_names
from ledgerflow.machines.state import RunState
from ledgerflow.machines.step_rules import open_side_effect_step
from ledgerflow.machines.steps import StepJournal
from ledgerflow.machines.workflow import Workflow

__all__ = ["TaskExecutor", "agent_limits"]

log = logging.getLogger("ledgerflow")

#: Folded runs kept per worker (each is freed once no attempt of it runs).
_VIEWS = 256
#: Waiting for the owner's answer to a step: quick at first, then calmer.
_FIRST_POLL_S = 0.001
_MAX_POLL_S = 0.02
_LOST_NAMES = [EXECUTOR_LOST, *exception_names(PermanentError)]


def agent_limits(workflows: dict[str, Workflow]) -> dict[tuple[str, str], AgentLimit]:
    """The pool-wide flow control the workflows declare, by (workflow, agent)."""
    return {(name, spec.name): AgentLimit(max_concurrent=spec.max_concurrent,
                                          per_minute=spec.per_minute)
            for name, wf in workflows.items() for spec in wf.agents.values()
            if spec.max_concurrent is not None or spec.per_minute is not None}


@dataclass(slots=True)
class _View:
    """A run's state as this worker last read it, and the dispatches it saw."""

    state: RunState
    dispatches: dict[tuple[str, int], ev.TaskDispatched] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class _RunViews:
    """Folded states of the runs this worker runs attempts of, caught up on demand."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.views: OrderedDict[str, _View] = OrderedDict()

    async def caught_up(self, run_id: str) -> _View:
        view = self.views.get(run_id)
        if view is None:
            view = self.views[run_id] = _View(RunState(run_id=run_id))
            while len(self.views) > _VIEWS:
                self.views.popitem(last=False)
        self.views.move_to_end(run_id)
        async with view.lock:
            state = view.state
            for envelope in await self.store.read_all(run_id, after=state.seq):
                event = ev.decode_logged(envelope.data, envelope.seq, run_id)
                evolve(state, event)
                if type(event) is ev.TaskDispatched:
                    view.dispatches[(event.task_id, event.attempt)] = event
        return view


class TaskExecutor:
    """Claims offered attempts of ``workflows`` and runs them for their runs' owners."""

    def __init__(
        self, store: EventStore, workflows: dict[str, Workflow], *, owner: str, ttl_s: float,
        clock: Callable[[], datetime], wake_owner: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        #: Tells an owner in this process that a fact of its run was posted.
        self.wake_owner = wake_owner
        #: Executors waiting for an answer, woken when this process's owners answer.
        self.waiting: set[asyncio.Event] = set()
        self.workflows = workflows
        self.owner = owner
        self.ttl_s = ttl_s
        self.clock = clock
        self.limits = agent_limits(workflows)
        self.slots = PoolSlots(store, owner=owner, ttl_s=ttl_s)
        self.views = _RunViews(store)
        #: The claims this executor holds, each with until when it is certainly held.
        self.held: dict[TaskClaim, _ClaimLease] = {}

    async def claim(self) -> TaskClaim | None:
        """Claim the oldest offered attempt within its agent's limits, or None."""
        asked_at = lease_clock()
        claim = await self.store.claim_task(self.owner, self.ttl_s,
                                            workflows=list(self.workflows), limits=self.limits)
        if claim is not None:
            self.held[claim] = _ClaimLease(self.store, claim, self.ttl_s,
                                           held_until=asked_at + self.ttl_s)
        return claim

    async def execute(self, claim: TaskClaim) -> bool:
        """Run the claimed attempt and post its outcome; False if the claim was lost."""
        lease = self.held.setdefault(claim, _ClaimLease(
            self.store, claim, self.ttl_s, held_until=lease_clock()))
        try:
            return await self._execute(claim, lease)
        finally:
            self.held.pop(claim, None)

    async def _execute(self, claim: TaskClaim, lease: _ClaimLease) -> bool:
        try:
            outcome = await self._outcome(claim, lease)
            if outcome is not None:
                await self.store.post_task_fact(claim, "outcome", ev.encode_event(outcome))
                self.posted(claim.run_id)
        except TaskClaimLostError as exc:
            log.warning("Worker %s lost its claim on task %s attempt %d of run %s: %s",
                        self.owner, claim.task_id, claim.attempt, claim.run_id, exc)
            return False
        return True

    async def _outcome(self, claim: TaskClaim, lease: _ClaimLease) -> ev.Event | None:
        wf = self.workflows[claim.label]
        view = await self.views.caught_up(claim.run_id)
        state = view.state
        task = state.tasks.get(claim.task_id)
        dispatched = view.dispatches.get((claim.task_id, claim.attempt))
        if (task is None or dispatched is None or task.attempt != claim.attempt
                or not task.outstanding):
            # The log moved past this attempt (it timed out, the run ended): nothing to do.
            log.info("Skipped task %s attempt %d of run %s: the log no longer awaits it.",
                     claim.task_id, claim.attempt, claim.run_id)
            return None
        spec = wf.spec(task.agent)
        started = open_side_effect_step(task.steps)
        if started is not None:
            # The decider escalates it ("outcome unknown"): never called again.
            return agent_failed(dispatched, _LOST_NAMES, (
                f"the worker running attempt {claim.attempt} stopped after its side-effecting "
                f"step {started.index} '{started.name}' started"))
        if claim.token > 1 and not spec.safe_to_repeat:
            return agent_failed(dispatched, _LOST_NAMES, (
                f"the worker running attempt {claim.attempt} stopped renewing its claim before "
                "recording an outcome"))
        if spec.side_effect:
            # The run's forks share its keys: one of them may hold this side effect's claim.
            shared = await claim_shared_effect(self.store, state, spec, dispatched)
            if shared is not None:
                return shared
            await lease.confirm_for_side_effect()
        # This process keeps the output's secrets in the vault itself: the owner
        # reads only references from the fact, and fetches them to decide.
        secrets = SecretKeeper(self.store)
        await secrets.load([dispatched.input, *(getattr(step, "result", None)
                                                for step in task.steps.values()),
                            *(step.result for step in task.done_side_effects.values())])
        journal = StepJournal(
            state=state, task_id=claim.task_id, attempt=claim.attempt,
            submit=_StepPoster(self, claim, view), clock=self.clock,
            max_event_bytes=self.store.max_event_bytes,
            before_side_effect=lease.confirm_for_side_effect,
            scrub=secrets.scrubber(dispatched.input),
            secrets=secrets.for_steps(state.run_id))
        call = asyncio.create_task(calls.call_agent(
            wf, state, dispatched, journal=journal,
            max_event_bytes=self.store.max_event_bytes, slots=self.slots,
            fencing_token=fencing_token_of(run_fence=claim.fence, claim_token=claim.token),
            secrets=secrets))
        beat = asyncio.create_task(self._renew(lease))
        try:
            await asyncio.wait({call, beat}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for work in (beat, call):
                if not work.done():
                    work.cancel()
            await asyncio.gather(beat, call, return_exceptions=True)
        if not call.cancelled() and call.exception() is None:
            return call.result()
        if not beat.cancelled() and beat.exception() is not None:
            raise beat.exception()  # type: ignore[misc]
        return call.result()  # re-raises what ended the call

    def posted(self, run_id: str) -> None:
        if self.wake_owner is not None:
            self.wake_owner(run_id)

    def answered(self) -> None:
        """Owners in this process answered facts: waiting steps look again now."""
        for waiter in self.waiting:
            waiter.set()

    async def _renew(self, lease: _ClaimLease) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            await lease.renew()


@dataclass(slots=True)
class _ClaimLease:
    """A pool claim held here, and until when it is certainly held (as a run's HeldLease)."""

    store: EventStore
    claim: TaskClaim
    ttl_s: float
    held_until: float

    async def renew(self) -> None:
        sent_at = lease_clock()
        await self.store.renew_task_claim(self.claim, self.ttl_s)  # TaskClaimLostError if not
        self.held_until = max(self.held_until, sent_at + self.ttl_s)

    async def confirm_for_side_effect(self) -> None:
        """Return once the claim is certainly held; :class:`TaskClaimLostError` if it is not."""
        now = lease_clock()
        if not lease_certainly_held(held_until=self.held_until, now=now,
                                    margin_s=side_effect_margin_s(self.ttl_s)):
            await self.renew()


class _StepPoster:
    """An executor's journal submit: post the step, return once the owner made it durable."""

    def __init__(self, executor: TaskExecutor, claim: TaskClaim, view: _View) -> None:
        self.executor = executor
        self.claim = claim
        self.view = view

    def __call__(self, fact: ev.StepStarted | ev.StepRecorded) -> asyncio.Future[None]:
        return asyncio.ensure_future(self._posted(fact))

    async def _posted(self, fact: ev.StepStarted | ev.StepRecorded) -> None:
        store, claim = self.executor.store, self.claim
        nudged = asyncio.Event()
        self.executor.waiting.add(nudged)
        try:
            fact_id = await store.post_task_fact(claim, "step", ev.encode_event(fact))
            self.executor.posted(claim.run_id)
            delay = _FIRST_POLL_S
            while True:
                nudged.clear()
                answer = await store.task_fact_answer(fact_id, claim)
                if answer is not None:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(nudged.wait(), delay)
                delay = min(delay * 2, _MAX_POLL_S)
        except TaskClaimLostError as exc:
            raise AttemptClosedError(
                f"Attempt {claim.attempt} of task '{claim.task_id}' is no longer this worker's "
                f"({exc}); its step was not recorded.") from exc
        finally:
            self.executor.waiting.discard(nudged)
        if not answer:
            raise AttemptClosedError(
                f"The owner of run '{claim.run_id}' refused step {fact.index} '{fact.name}' of "
                f"attempt {claim.attempt} of task '{claim.task_id}' (the attempt timed out, or "
                "the run ended); it was not recorded.")
        if self.view.state.max_cost is not None:
            # Spend seen by the next step's budget check, as in one process.
            with contextlib.suppress(Exception):
                await self.executor.views.caught_up(claim.run_id)
