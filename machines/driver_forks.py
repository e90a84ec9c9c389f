"""The driver's fork recovery: a fork never repeats what its family already did.

A mixin of :class:`~ledgerflow.machines.driver.Driver` (its own module to
keep the driver readable): reading and indexing the origin chain once per
drive, a fork's side-effecting calls answered from the origin when it
already acted, the outcomes the origin recorded for attempts the fork's
copy left open, and the store-wide claim that keeps sibling forks (and an
origin continued after its fork) from performing a non-idempotent side
effect twice (:mod:`ledgerflow.machines.effect_claims`).

Example::

    fact = await driver.call_in_fork(dispatched)   # the family's outcome, or the agent's
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledgerflow.machines import calls
from ledgerflow.machines import events as ev
from ledgerflow.machines.effect_claims import claim_shared_effect
from ledgerflow.machines.lease_guard import fencing_token_of
from ledgerflow.machines.origin import OriginIndex, index_origin, origin_of, reuse_for

if TYPE_CHECKING:
    from ledgerflow.machines.lease_guard import HeldLease
    from ledgerflow.machines.orchestrator import Orchestrator
    from ledgerflow.machines.secret_keeping import SecretKeeper
    from ledgerflow.machines.state import RunState
    from ledgerflow.machines.steps import StepJournal
    from ledgerflow.machines.workflow import Workflow

__all__ = ["ForkRecovery"]


class ForkRecovery:
    """What a driver does for a fork; needs ``orch``, ``wf``, ``state`` and ``journal``."""

    orch: Orchestrator
    wf: Workflow
    state: RunState
    _origin: OriginIndex | None
    secrets: SecretKeeper
    lease: HeldLease | None
    fence: int | None

    def journal(self, task_id: str, attempt: int) -> StepJournal:
        raise NotImplementedError

    async def origin(self) -> OriginIndex:
        """The fork's origin chain, read and indexed once per drive.

        A fork of a fork shares its key base with every run up the chain, and
        any of them may have performed a side effect this fork's copy does not
        show: the direct origin after the fork point, its own origin after the
        earlier of the two points, and so on up to a run that is no fork.
        """
        if self._origin is None:
            assert self.state.forked_from is not None
            origin_id, at_seq = self.state.forked_from
            index = OriginIndex(origin_id, at_seq)
            seen = {self.state.run_id}
            cut: int = at_seq
            next_: tuple[str, int] | None = (origin_id, at_seq)
            while next_ is not None and next_[0] not in seen:
                run_id, point = next_
                seen.add(run_id)
                # Only the first `cut` events of this run are in the fork's copy.
                cut = min(cut, point)
                log_ = [(env.seq, ev.decode_logged(env.data, env.seq, run_id))
                        async for env in self.orch.store.read(run_id)]
                index_origin(run_id, log_, after_seq=cut, into=index)
                next_ = origin_of(log_)
            self._origin = index
        return self._origin

    async def call_in_fork(self, dispatched: ev.TaskDispatched) -> ev.Event:
        """A fork's side effect: the family's outcome if a member already acted, else the agent.

        The origin chain first (no round trip once indexed), then the claim:
        a sibling, or an origin that went on after the fork, may hold it.
        """
        spec = self.wf.spec(self.state.tasks[dispatched.task_id].agent)
        fact = reuse_for(await self.origin(), dispatched,
                         repeat=self.state.repeat_side_effects, idempotent=spec.idempotent)
        if fact is None:
            fact = await claim_shared_effect(self.orch.store, self.state, spec, dispatched)
        if fact is not None:
            return fact
        # Fenced like any side effect: started only while the lease is certainly held.
        if self.lease is not None:
            await self.lease.confirm_for_side_effect()
        return await calls.call_agent(self.wf, self.state, dispatched,
                                      journal=self.journal(dispatched.task_id,
                                                           dispatched.attempt),
                                      max_event_bytes=self.orch.store.max_event_bytes,
                                      secrets=self.secrets,
                                      fencing_token=fencing_token_of(run_fence=self.fence))

    async def shared_effect_outcome(self, dispatched: ev.TaskDispatched) -> ev.Event | None:
        """For a run that is no fork: its forks' outcome of this side effect, or None to act.

        None at the cost of one indexed read while the run has no fork; once
        it has, the claim decides (:func:`claim_shared_effect`).
        """
        spec = self.wf.spec(self.state.tasks[dispatched.task_id].agent)
        return await claim_shared_effect(self.orch.store, self.state, spec, dispatched)

    async def recovered_from_origin(self) -> list[ev.Event]:
        """Outcomes the origin recorded for a fork's copied, open side-effect attempts.

        A fork made between a dispatch and its outcome copies an attempt with
        no outcome; the origin knows it, so resuming the fork must not call it
        "outcome unknown after crash" (nor perform it again).
        """
        open_attempts = [t for t in self.state.tasks.values() if t.outstanding
                         and self.wf.agents[t.agent].side_effect and t.input is not None]
        if not open_attempts:
            return []
        index = await self.origin()
        facts: list[ev.Event] = []
        for task in open_attempts:
            dispatched = ev.TaskDispatched(
                task_id=task.id, attempt=task.attempt, input=task.input or {},
                idempotency_key=task.idempotency_key or "", timeout_s=0.0)
            # An outcome unknown to the origin too is left to RunResumed, as after a crash.
            fact = reuse_for(index, dispatched, repeat=self.state.repeat_side_effects,
                             idempotent=True)
            if fact is not None:
                facts.append(fact)
        return facts
