"""Leases: one process at a time drives a run, and a dead one does not block it.

A driver holds the run's lease in the store for ``ttl_s`` and renews it every
third of that. A crashed owner's lease lapses after its ttl; but an owner that
is *known* dead need not be waited for: an owner string is
``host:pid:suffix``, and when the host is this one and that process is gone
(or it is this process and none of its drivers holds the run), the lease is
taken over at once. See :func:`lease_owner_is_gone` for the rule and the cases
it cannot see.

Example::

    async with hold_lease(store, "r1", new_owner(), ttl_s=30, wait_s=0):
        ...  # drive run r1; RunBusyError if another live process holds it
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ledgerflow.eventstore import EventStore
from ledgerflow.machines.calls import cancelled_from_outside
from ledgerflow.machines.errors import RunBusyError
from ledgerflow.machines.lease_guard import HeldLease, lease_clock

__all__ = ["LeaseHolder", "hold_lease", "lease_owner_is_gone", "new_owner", "read_lease"]

log = logging.getLogger("ledgerflow")

#: The owners ledgerflow generates; a hand-chosen owner is never judged dead.
_OWNER = re.compile(r"^(?P<host>.+):(?P<pid>[1-9][0-9]*):[0-9a-f]{8}$")
#: (owner, run_id) of every lease a driver of THIS process holds right now.
_HELD_HERE: set[tuple[str, str]] = set()
#: Attempts at giving a lease back after a store error, and the pause between.
_RELEASE_TRIES = (0.0, 0.05, 0.25)


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    """Who holds a run's lease, and for how much longer unless renewed."""

    owner: str
    expires_in_s: float


def new_owner() -> str:
    """A fresh owner string, ``host:pid:suffix``.

    >>> new_owner().count(":") >= 2
    True
    """
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_owner_is_gone(owner: str, run_id: str) -> bool:
    """Whether ``owner`` certainly no longer drives ``run_id``, so its lease may be taken now.

    True only when all of these hold:

    - ``owner`` has the form ledgerflow generates (``host:pid:8 hex digits``);
    - its host is this host (a pid means nothing on another machine);
    - either that pid is not a running process here (``os.kill(pid, 0)``
      raises ProcessLookupError; PermissionError means it runs as another
      user), or it is this very process and none of its drivers holds the run.

    A reused pid makes the owner look alive: that errs on the safe side (we
    wait for the ttl). What this cannot see: two machines, or two containers
    with separate pid namespaces, that share one host name and one store. Give
    such workers distinct host names, or pass ``take_over_dead_owners=False``
    to the Orchestrator. Never on Windows, where ``os.kill`` cannot probe.

    >>> lease_owner_is_gone("worker-7", "r1")
    False
    """
    match = _OWNER.match(owner)
    if match is None or sys.platform == "win32":
        return False
    if match["host"] != socket.gethostname():
        return False
    pid = int(match["pid"])
    if pid == os.getpid():
        return (owner, run_id) not in _HELD_HERE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: alive, another user's
        return False
    return False


async def read_lease(store: EventStore, run_id: str) -> LeaseHolder | None:
    """The run's current lease holder (``store.lease_of``); None if the lease is free.

    Example::

        holder = await read_lease(store, "r1")   # LeaseHolder(owner=..., expires_in_s=...)
    """
    row = await store.lease_of(run_id)
    if row is None:
        return None
    owner, expires_at = row
    left = float(expires_at) - time.time()
    return LeaseHolder(owner=str(owner), expires_in_s=max(0.0, left)) if left > 0 else None


async def _take_over(store: EventStore, run_id: str, owner: str, ttl_s: float) -> int | None:
    """Take the lease from a holder that is gone; its fence, or None if it lives or is unknown."""
    holder = await read_lease(store, run_id)
    if holder is None or not lease_owner_is_gone(holder.owner, run_id):
        return None
    # release_lease deletes only while that owner still holds it, so two
    # processes taking over at once cannot both win: the second finds ours.
    await store.release_lease(run_id, holder.owner)
    fence = await store.take_lease(run_id, owner, ttl_s)
    if fence is not None:
        log.warning("Took over the lease on run %s from %s, a process that is gone.",
                    run_id, holder.owner)
    return fence


async def _acquire(
    store: EventStore, run_id: str, owner: str, *, ttl_s: float, wait_s: float,
    take_over: bool = True, operation: str = "resume",
) -> int:
    """Take the run's lease (its fence), waiting up to ``wait_s``; else :class:`RunBusyError`."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + wait_s
    pause = min(0.05, ttl_s / 4)
    while (fence := await store.take_lease(run_id, owner, ttl_s)) is None:
        if take_over and (fence := await _take_over(store, run_id, owner, ttl_s)) is not None:
            return fence
        # A crashed owner's lease lapses after its ttl; a live one keeps renewing.
        left = give_up - loop.time()
        if left <= 0:
            holder = await read_lease(store, run_id)
            raise RunBusyError(run_id, owner=holder.owner if holder else None,
                               expires_in_s=holder.expires_in_s if holder else None,
                               operation=operation)
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, 1.0)
    return fence


async def _release(store: EventStore, run_id: str, owner: str) -> None:
    """Give the lease back, retrying a store error; never raises (the ttl is the backstop)."""
    for pause in _RELEASE_TRIES:
        if pause:
            await asyncio.sleep(pause)
        try:
            await store.release_lease(run_id, owner)
        except Exception:  # a full disk or a dropped connection: try again, then give up
            log.warning("Could not release the lease on run %s; retrying.", run_id,
                        exc_info=True)
        else:
            return
    log.error("Gave up releasing the lease on run %s; another process can take the run "
              "once this one exits, or after the lease's ttl.", run_id)


@contextlib.asynccontextmanager
async def hold_lease(
    store: EventStore, run_id: str, owner: str, *, ttl_s: float, wait_s: float,
    take_over: bool = True, operation: str = "resume",
) -> AsyncIterator[HeldLease]:
    """Hold the run's lease (renewed) for the body, which gets it; released at the end.

    Every append made under the lease carries the fence, so the store refuses
    it once another process holds the run (:class:`~ledgerflow.eventstore.LeaseLostError`),
    even from a process paused past its ttl that has not noticed yet. If the
    lease is lost while held (a renewal finds it gone), the body's task is
    cancelled and :class:`RunBusyError` raised: two processes never drive one run.
    """
    asked_at = lease_clock()  # counts a suspend of the machine, as the store's clock does
    fence = await _acquire(store, run_id, owner, ttl_s=ttl_s, wait_s=wait_s,
                           take_over=take_over, operation=operation)
    held = HeldLease(store, run_id, owner, ttl_s, fence, held_until=asked_at + ttl_s)
    _HELD_HERE.add((owner, run_id))
    current = asyncio.current_task()
    lost = asyncio.Event()
    renewer = asyncio.create_task(_renew(held, lost=lost, holder=current))
    try:
        yield held
    except asyncio.CancelledError:
        if lost.is_set():
            if current is not None:
                current.uncancel()  # the cancel was ours: report the lost lease instead
            holder = await _holder_after_loss(store, run_id)
            raise RunBusyError(run_id, owner=holder.owner if holder else None,
                               expires_in_s=holder.expires_in_s if holder else None,
                               operation=operation) from None
        raise
    finally:
        _HELD_HERE.discard((owner, run_id))
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await renewer
        # Even after a store error, or renewals that failed: release_lease only
        # deletes a lease that is still ours, so giving it back is always safe.
        await _release(store, run_id, owner)
        if cancelled_from_outside() and not lost.is_set():
            raise asyncio.CancelledError  # one swallowed while awaiting the renewer


async def _holder_after_loss(store: EventStore, run_id: str) -> LeaseHolder | None:
    """Who holds the run now that this process lost it (None if nobody, or unknown)."""
    try:
        return await read_lease(store, run_id)
    except Exception:  # the store that cost us the lease may still be failing
        return None


async def _renew(held: HeldLease, *, lost: asyncio.Event,
                 holder: asyncio.Task[Any] | None) -> None:
    store, run_id, owner, ttl_s = held.store, held.run_id, held.owner, held.ttl_s
    while True:
        await asyncio.sleep(ttl_s / 3)
        sent_at = lease_clock()
        try:
            # Another fence means the run passed to another owner meanwhile.
            renewed = await store.take_lease(run_id, owner, ttl_s) == held.fence
        except Exception:  # a busy or dropped store: try again until the ttl runs out
            log.warning("Could not renew the lease on run %s; retrying.", run_id, exc_info=True)
            renewed = lease_clock() < held.held_until
        else:
            if renewed:
                held.renewed(sent_at=sent_at)
        if not renewed:
            log.error("Lost the lease on run %s; stopping so that only one process drives it.",
                      run_id)
            lost.set()
            if holder is not None:
                holder.cancel()
            return
