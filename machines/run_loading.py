"""Rebuilding a run's state from its log: the one loader every operation uses.

A long run is not folded from its first event each time: the loader starts
from the latest usable state snapshot at or before the asked seq
(:mod:`ledgerflow.machines.snapshots`) and folds only the events after it.
Usable means: of this version's format and shape, decodes, and its hash is
still the chain hash of the event at its seq (one envelope read). Anything
else is ignored (an older snapshot is tried, then the start of the log): a
snapshot is a cache, and the log stays the truth.
"""

from __future__ import annotations

import logging

from ledgerflow.eventstore import EventStore, EventStoreError
from ledgerflow.eventstore.chain_keys import StoredChainCheck
from ledgerflow.eventstore.errors import EventUnreadableError
from ledgerflow.machines import events as ev
from ledgerflow.machines.errors import ChainBrokenError, RunNotFoundError
from ledgerflow.machines.evolve import evolve
from ledgerflow.machines.snapshots import (
    DEFAULT_SNAPSHOT_KEEP,
    SNAPSHOT_FORMAT,
    SnapshotDecodeError,
    decode_snapshot,
)
from ledgerflow.machines.state import RunState

__all__ = ["load_run_state", "usable_snapshot"]

log = logging.getLogger("ledgerflow")


async def load_run_state(store: EventStore, run_id: str, at: int | None = None, *,
                         check_chain: bool = False, snapshots: bool = True) -> RunState:
    """Rebuild a run's state (up to seq ``at``): its latest usable snapshot, then the tail.

    With ``check_chain`` the hash chain (and the ``runs`` row's last seq) is
    checked in the same pass, each event before it is folded:
    :class:`ChainBrokenError` at the first break (what every operation that
    appends asks: nothing chains onto an edited log). From a snapshot, the
    chain is checked from the snapshot's seq on, the snapshot's hash being
    the chain hash the log holds there; the events before it were checked
    when they were folded into the snapshot, and ``verify`` checks them and
    the snapshot itself again (an edited snapshot whose hash still matches is
    found by ``verify``, not here). ``snapshots=False`` folds from the start.

    Example::

        state = await load_run_state(store, "r1", at=12)
    """
    start = await usable_snapshot(store, run_id, at) if snapshots else None
    state = RunState(run_id=run_id) if start is None else start[0]
    decoder = ev.decode_logged
    check = None
    if check_chain:
        check = StoredChainCheck(run_id, after=None if start is None else (state.seq, start[1]))
    # Streamed in chunks: a million-event log folds in constant memory.
    try:
        async for envelope in store.read(run_id, after=state.seq, until=at):
            if check is not None and (broken := check.feed(envelope)) is not None:
                raise ChainBrokenError(run_id, broken.seq, broken.message)
            evolve(state, decoder(envelope.data, envelope.seq, run_id))
    except EventUnreadableError as exc:
        if check is None:
            raise
        broken = check.unreadable(exc)
        raise ChainBrokenError(run_id, broken.seq, broken.message) from exc
    if state.seq == 0:
        raise RunNotFoundError(run_id)
    if check is not None and at is None and (broken := await check.finish(store)) is not None:
        raise ChainBrokenError(run_id, broken.seq, broken.message)
    return state


async def usable_snapshot(store: EventStore, run_id: str,
                          at: int | None = None) -> tuple[RunState, str] | None:
    """The latest usable snapshot's state at or before ``at``, with its chain hash; or None.

    Tries the latest few (as many as are kept), newest first; each one not
    usable is logged and skipped.

    Example::

        found = await usable_snapshot(store, "r1", at=5000)
        if found is not None:
            state, chain_hash = found
    """
    upper = at
    for _ in range(DEFAULT_SNAPSHOT_KEEP + 1):
        if upper is not None and upper < 1:
            return None
        try:
            snap = await store.latest_snapshot(run_id, at_most_seq=upper)
            if snap is None:
                return None
            problem, state = await _checked(store, run_id, snap.seq, snap.hash, snap.format,
                                            snap.state)
        except EventStoreError as exc:
            # A snapshot that cannot even be read back is no reason to fail a load.
            log.warning("Not using the snapshots of run %r: %s", run_id, exc)
            return None
        if state is not None:
            return state, snap.hash
        log.warning("Ignored the snapshot of run %r at seq %d: %s; folding from an older "
                    "one or the start.", run_id, snap.seq, problem)
        upper = snap.seq - 1
    return None


async def _checked(  # noqa: PLR0917 - the stored row's columns, in their order
    store: EventStore, run_id: str, seq: int, hash_: str, format_: int, data: bytes
) -> tuple[str, RunState | None]:
    """Why a snapshot is not usable (and None), or ``("", its state)``."""
    if format_ != SNAPSHOT_FORMAT:
        return f"it is of format {format_}, this version reads {SNAPSHOT_FORMAT}", None
    at_seq = [env async for env in store.read(run_id, after=seq - 1, until=seq)]
    if not at_seq or at_seq[0].hash != hash_:
        return ("the log no longer holds its hash at that seq (the log was rewritten or "
                "truncated since)"), None
    try:
        state = decode_snapshot(data)
    except SnapshotDecodeError as exc:
        return str(exc), None
    if state.run_id != run_id or state.seq != seq:
        return (f"it holds the state of run {state.run_id!r} at seq {state.seq}, not of this "
                "run at its seq"), None
    return "", state
