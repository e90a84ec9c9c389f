"""What a fork's origin already did, so that a fork never does a side effect twice.

A fork shares its origin's idempotency keys (``RunStarted.key_base``), so an
attempt the fork dispatches to a side-effecting agent may be one the origin
already performed. Before calling such an agent, the runtime asks
:func:`reuse_for` what the origin recorded under that key:

- nothing after the fork point: the origin never did it; call the agent;
- the same input: the origin's recorded outcome is the fork's (its reason
  names the origin run and seq); the agent is not called;
- only other inputs: calling again would act twice under one key, so the
  attempt fails as permanent (and escalates), unless the fork was made with
  ``repeat_side_effects=True``.

Everything here is pure: the origin's log comes in decoded. What a fork's
siblings, or its origin after the fork point, did is not in the origin chain:
:mod:`ledgerflow.machines.effect_claims` finds it through a store-wide claim
and answers from the holder's log with this same :func:`reuse_for`.

Example::

    index = index_origin(origin_id, decoded_origin_log, after_seq=fork_at)
    fact = reuse_for(index, dispatched, repeat=False)   # None: call the agent
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from ledgerflow.machines import events as ev
from ledgerflow.machines.errors import PermanentError
from ledgerflow.machines.stable_names import (
    SIDE_EFFECT_INPUT_CHANGED,
    SIDE_EFFECT_OUTCOME_UNKNOWN,
    exception_names,
)

__all__ = [
    "OriginAttempt", "OriginIndex", "agent_failed", "index_origin", "origin_of", "reuse_for"]

_CHANGED = [SIDE_EFFECT_INPUT_CHANGED, *exception_names(PermanentError)]
_UNKNOWN = [SIDE_EFFECT_OUTCOME_UNKNOWN, *exception_names(PermanentError)]


@dataclass(slots=True)
class OriginAttempt:
    """One dispatch the origin recorded, and its outcome if it recorded one."""

    seq: int
    dispatched: ev.TaskDispatched
    outcome: ev.OutputReceived | ev.AgentFailed | None = None
    outcome_seq: int = 0
    #: The run whose log holds this attempt (the direct origin or an earlier one).
    run_id: str = ""


@dataclass(slots=True)
class OriginIndex:
    """The origins' side-effect attempts by idempotency key, after each fork point.

    A fork of a fork holds the attempts of every run up its origin chain:
    its direct origin after the fork point, that run's origin after the
    earlier of the two points, and so on (all share one ``key_base``).
    """

    origin_run_id: str
    at_seq: int
    by_key: dict[str, list[OriginAttempt]] = field(default_factory=dict)


def index_origin(
    origin_run_id: str, log: Iterable[tuple[int, ev.Event]], *, after_seq: int,
    into: OriginIndex | None = None,
) -> OriginIndex:
    """Index the origin's dispatches with their outcomes (added to ``into`` if given).

    Kept: every dispatch whose outcome falls after ``after_seq`` (or that
    has none): those are what the fork's copy does not already hold.
    """
    index = into if into is not None else OriginIndex(origin_run_id, after_seq)
    open_attempts: dict[tuple[str, int], OriginAttempt] = {}
    found_here: list[OriginAttempt] = []
    for seq, event in log:
        kind = type(event)
        if kind is ev.TaskDispatched:
            assert isinstance(event, ev.TaskDispatched)
            attempt = OriginAttempt(seq, event, run_id=origin_run_id)
            open_attempts[(event.task_id, event.attempt)] = attempt
            found_here.append(attempt)
        elif kind is ev.OutputReceived or kind is ev.AgentFailed:
            assert isinstance(event, ev.OutputReceived | ev.AgentFailed)
            found = open_attempts.pop((event.task_id, event.attempt), None)
            if found is not None:
                found.outcome, found.outcome_seq = event, seq
    for attempt in found_here:
        if attempt.outcome is None or attempt.outcome_seq > after_seq:
            index.by_key.setdefault(attempt.dispatched.idempotency_key, []).append(attempt)
    return index


def origin_of(log: Iterable[tuple[int, ev.Event]]) -> tuple[str, int] | None:
    """The origin a run's log names (its last :class:`ForkedFrom`), or None for no fork."""
    origin: tuple[str, int] | None = None
    for _, event in log:
        if type(event) is ev.ForkedFrom:
            assert isinstance(event, ev.ForkedFrom)
            origin = (event.origin_run_id, event.at_seq)
    return origin


def reuse_for(
    index: OriginIndex, dispatched: ev.TaskDispatched, *, repeat: bool, idempotent: bool
) -> ev.Event | None:
    """The fact to record instead of calling the agent, or None to call it.

    ``idempotent``: the agent may be called again under the same key when the
    origin's outcome is unknown (its own resume would have done the same).
    """
    attempts = index.by_key.get(dispatched.idempotency_key)
    if not attempts:
        return None
    same = [a for a in attempts if a.dispatched.input == dispatched.input]
    # The origin's output if it got one; else its failure of this very attempt.
    known = [a for a in same if type(a.outcome) is ev.OutputReceived] or [
        a for a in same if a.outcome is not None and a.dispatched.attempt == dispatched.attempt]
    for attempt in known:
        if attempt.outcome is not None:
            why = (f"Reused the outcome run '{attempt.run_id}' recorded at seq "
                   f"{attempt.outcome_seq} for the same input under key "
                   f"'{dispatched.idempotency_key}' (dispatched "
                   f"at seq {attempt.seq}); the side effect is not performed again.")
            return msgspec.structs.replace(
                attempt.outcome, attempt=dispatched.attempt, tokens=0, cost=0.0, reason=why)
    unknown = [a for a in same if a.outcome is None]
    if unknown and not idempotent:
        first = unknown[0]
        return agent_failed(dispatched, _UNKNOWN, (
            f"run '{first.run_id}' dispatched this side effect with the same input at seq "
            f"{first.seq} and recorded no outcome, so it may have acted; it is not performed "
            "again: a person must check"))
    if same or repeat:
        return None  # the origin's attempts with this input failed: retrying is a retry
    first = attempts[0]
    return agent_failed(dispatched, _CHANGED, (
        f"run '{first.run_id}' already performed this side effect under key "
        f"'{dispatched.idempotency_key}' at seq {first.seq} with a different input; "
        "performing it again could act twice, so it is escalated (fork with "
        "repeat_side_effects=True to perform it anyway)"))


def agent_failed(
    dispatched: ev.TaskDispatched, names: list[str], message: str, *,
    error_type: str | None = None, timed_out: bool = False, tokens: int = 0, cost: float = 0.0,
) -> ev.AgentFailed:
    """The AgentFailed fact of ``dispatched``'s attempt, as ``names`` (most specific first).

    ``error_type`` is ``names[0]`` unless given. The one builder of the fact,
    for the calls to agents and for a fork's refusal to repeat a side effect.

    Example::

        agent_failed(dispatched, exception_names(KeyError), "no price for 'LIS'")
    """
    return ev.AgentFailed(
        task_id=dispatched.task_id, attempt=dispatched.attempt,
        error_type=names[0] if error_type is None else error_type, error_types=names,
        message=message, timed_out=timed_out, tokens=tokens, cost=cost)
