"""Side effects start only while the lease is certainly held, and carry a fencing token.

A fenced append cannot land after the run passed to another owner; an agent
already acting in the world can. Two rules narrow that window, and the
token closes it for systems that can check one:

- a side-effecting agent, or a side-effecting journaled step, starts only if
  the lease is *certainly* held: its expiry, judged from when the last
  renewal was *sent* (the store may have granted it later, never earlier),
  is more than a safety margin away; otherwise the lease is renewed first,
  and if that fails the call does not start. Judged on :func:`lease_clock`,
  which keeps counting while the machine is suspended (the event loop's
  clock does not: a laptop that slept, a VM suspended, would wake believing
  its lease still fresh while the store's clock let it lapse);
- ``ctx.fencing_token`` grows with every takeover of the attempt (the run
  lease's fence, then the pool claim's token): pass it to an API that keeps
  the highest token it has seen per key and refuses lower ones, and a
  process paused past its lease (SIGSTOP, a long GC) that wakes mid-call is
  refused by the API itself. What stays the user's part: a system that takes
  no token can still see a late call from a paused process; make such calls
  idempotent by ``ctx.idempotency_key``.

Example::

    >>> lease_certainly_held(held_until=100.0, now=97.0, margin_s=2.0)
    True
    >>> fencing_token_of(run_fence=3, claim_token=2)
    3000002
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ledgerflow.eventstore import EventStore, LeaseLostError

__all__ = ["CLAIMS_PER_FENCE", "HeldLease", "fencing_token_of", "lease_certainly_held",
           "lease_clock", "side_effect_margin_s"]

#: Room for pool re-claims of one attempt under one run fence in a fencing token.
CLAIMS_PER_FENCE = 1_000_000
#: Linux's monotonic clock that includes time suspended (None elsewhere).
_BOOTTIME: int | None = getattr(time, "CLOCK_BOOTTIME", None)


def lease_clock() -> float:
    """Seconds on a monotonic clock that also counts time the machine spent suspended.

    ``CLOCK_BOOTTIME`` where there is one (Linux), else ``time.monotonic()``.
    A process stopped (SIGSTOP, a GC pause) sees either clock advance; only
    this one advances across a suspend of the whole machine, as the store's
    clock, which judges the lease's expiry, does.

    >>> lease_clock() <= lease_clock()
    True
    """
    if _BOOTTIME is not None:
        return time.clock_gettime(_BOOTTIME)
    return time.monotonic()


def lease_certainly_held(*, held_until: float, now: float, margin_s: float) -> bool:
    """Whether a lease known to last until ``held_until`` is held with ``margin_s`` to spare."""
    return held_until - now > margin_s


def side_effect_margin_s(ttl_s: float) -> float:
    """The safety margin before a side effect: a fifth of the ttl, at least 0.5 s, at most half."""
    return min(max(0.5, ttl_s / 5), ttl_s / 2)


def fencing_token_of(*, run_fence: int | None, claim_token: int = 0) -> int | None:
    """One number that grows with every takeover: the run's fence first, then the claim's token."""
    if run_fence is None:
        return None
    return run_fence * CLAIMS_PER_FENCE + claim_token


@dataclass(slots=True)
class HeldLease:
    """A run lease this process holds: its fence and until when it is certainly held."""

    store: EventStore
    run_id: str
    owner: str
    ttl_s: float
    fence: int
    #: :func:`lease_clock` time by which the lease lapses at the earliest.
    held_until: float

    def renewed(self, *, sent_at: float) -> None:
        """A renewal sent at ``sent_at`` (:func:`lease_clock` time) was granted."""
        self.held_until = max(self.held_until, sent_at + self.ttl_s)

    async def confirm_for_side_effect(self) -> None:
        """Return once the lease is certainly held; :class:`LeaseLostError` if it is not ours."""
        now = lease_clock()
        if lease_certainly_held(held_until=self.held_until, now=now,
                                margin_s=side_effect_margin_s(self.ttl_s)):
            return
        fence = await self.store.take_lease(self.run_id, self.owner, self.ttl_s)
        if fence != self.fence:
            raise LeaseLostError(self.run_id, self.fence, None, fence)
        self.renewed(sent_at=now)
