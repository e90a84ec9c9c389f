"""A fork family performs a non-idempotent side effect once: a store-wide claim per key.

A fork shares its origin's idempotency keys, and a run's log never shows
what its sibling forks, or its own forks, did under them: an origin resolved
after its fork, or two forks of one waiting run, would each book the same
flight. So before a non-idempotent side effect whose key may be shared, the
member claims (key, attempt) in the store (:meth:`EventStore.claim_effect`,
atomic, never released). Exactly one member takes it and performs it; every
other is answered from the holder's log, as a fork is from its origin
(:func:`~ledgerflow.machines.origin.reuse_for`): the holder's outcome for the
same input, "outcome unknown" (escalated) while the holder is in flight, has
crashed, or recorded none, "input changed" (escalated) for another input,
unless the run is a fork made with ``repeat_side_effects=True``, which then
performs it on purpose.

The rule for when a key may be shared, :func:`must_claim_shared_effect`:
the side effect is not idempotent (an idempotent one keeps relying on the
shared key), and the run is a fork (always: the cheapest test, no round
trip), or its key base is a registered fork family (one indexed read).
``fork_run`` registers the family before the fork exists, so an origin that
read "no family" had already made its dispatch durable, and every later fork
sees that dispatch in its copy or its origin index.

Example::

    fact = await claim_shared_effect(store, state, spec, dispatched)
    if fact is None:
        ...  # this run holds the claim (or none is needed): call the agent
"""

from __future__ import annotations

from ledgerflow.eventstore import EventStore
from ledgerflow.machines import events as ev
from ledgerflow.machines.errors import PermanentError
from ledgerflow.machines.origin import agent_failed, index_origin, reuse_for
from ledgerflow.machines.stable_names import SIDE_EFFECT_OUTCOME_UNKNOWN, exception_names
from ledgerflow.machines.state import RunState
from ledgerflow.machines.workflow import AgentSpec

__all__ = ["claim_shared_effect", "must_claim_shared_effect"]

_UNKNOWN = [SIDE_EFFECT_OUTCOME_UNKNOWN, *exception_names(PermanentError)]


async def must_claim_shared_effect(store: EventStore, state: RunState, spec: AgentSpec) -> bool:
    """Whether this side effect's key may be shared with another member of a fork family.

    Example::

        await must_claim_shared_effect(store, fork_state, booking_spec)   # True
    """
    if not spec.side_effect or spec.idempotent:
        return False
    if state.forked_from is not None:
        return True
    return await store.has_fork_family(state.key_base or state.run_id)


async def claim_shared_effect(
    store: EventStore, state: RunState, spec: AgentSpec, dispatched: ev.TaskDispatched
) -> ev.Event | None:
    """The fact to record instead of performing ``dispatched``, or None to perform it.

    None: no claim is needed, or this call took it. Called once the dispatch
    is durable and just before the agent, so a holder's log always shows the
    dispatch it claimed for.

    Example::

        fact = await claim_shared_effect(store, state, spec, dispatched)
    """
    if not await must_claim_shared_effect(store, state, spec):
        return None
    claim = await store.claim_effect(dispatched.idempotency_key, dispatched.attempt,
                                     run_id=state.run_id, task_id=dispatched.task_id)
    if claim.taken:
        return None
    key = dispatched.idempotency_key
    if claim.run_id == state.run_id:
        # Only a crash between an earlier claim of this very attempt and its outcome
        # leads here: the agent may have acted, and it is never called twice.
        return agent_failed(dispatched, _UNKNOWN, (
            f"this run claimed attempt {dispatched.attempt} of this side effect under key "
            f"'{key}' before and recorded no outcome, so it may have acted; it is not "
            "performed again: a person must check"))
    log = [(env.seq, ev.decode_logged(env.data, env.seq, claim.run_id))
           async for env in store.read(claim.run_id)]
    fact = reuse_for(index_origin(claim.run_id, log, after_seq=0), dispatched,
                     repeat=state.repeat_side_effects, idempotent=False)
    if fact is not None or state.repeat_side_effects:
        return fact
    return agent_failed(dispatched, _UNKNOWN, (
        f"run '{claim.run_id}' claimed attempt {dispatched.attempt} of this side effect under "
        f"key '{key}' and its log shows no outcome of it, so it may have acted; it is not "
        "performed again: a person must check"))
