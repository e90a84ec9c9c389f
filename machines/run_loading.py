"""Rebuilding a run's state from its log: the one loader every operation uses."""

from __future__ import annotations

from ledgerflow.eventstore import EventStore
from ledgerflow.eventstore.chain_keys import StoredChainCheck
from ledgerflow.eventstore.errors import EventUnreadableError
from ledgerflow.machines import events as ev
from ledgerflow.machines.errors import ChainBrokenError, RunNotFoundError
from ledgerflow.machines.evolve import evolve
from ledgerflow.machines.state import RunState

__all__ = ["load_run_state"]


async def load_run_state(store: EventStore, run_id: str, at: int | None = None, *,
                         check_chain: bool = False) -> RunState:
    """Rebuild a run's state by folding its log (up to seq ``at``).

    With ``check_chain`` the hash chain (and the ``runs`` row's last seq) is
    checked in the same pass, each event before it is folded:
    :class:`ChainBrokenError` at the first break (what every operation that
    appends asks: nothing chains onto an edited log).

    Example::

        state = await load_run_state(store, "r1", at=12)
    """
    state = RunState(run_id=run_id)
    decoder = ev.decode_logged
    check = StoredChainCheck(run_id) if check_chain else None
    # Streamed in chunks: a million-event log folds in constant memory.
    try:
        async for envelope in store.read(run_id, until=at):
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
