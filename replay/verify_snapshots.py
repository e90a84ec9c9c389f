"""``verify``'s snapshots check: each stored state snapshot is what the log folds to.

A snapshot (:mod:`ledgerflow.machines.snapshots`) is outside the hash chain,
and a resume trusts one whose hash is still the chain hash at its seq. So
``verify`` is where an edited snapshot is found: the log is folded again, and
at each snapshot's seq the decoded snapshot must equal the fold (compared as
encoded, field by field), and its hash must be the chain hash there.

Example::

    check = check_snapshots("r1", envelopes, events, await store.snapshots("r1"))
    print(check.line())   # PASS  snapshots: 2 snapshots (seqs 4000, 6000) equal the fold ...
"""

from __future__ import annotations

from collections.abc import Sequence

from ledgerflow.eventstore import Envelope
from ledgerflow.eventstore.core_snapshots import StoredSnapshot
from ledgerflow.machines import Event, RunState, evolve
from ledgerflow.machines.snapshots import (
    SNAPSHOT_FORMAT,
    SnapshotDecodeError,
    decode_snapshot,
    snapshot_differences,
)
from ledgerflow.replay.verify import Check

__all__ = ["check_snapshots"]

_SHOWN_FIELDS = 5


def check_snapshots(run_id: str, envelopes: Sequence[Envelope], events: Sequence[Event],
                    snapshots: Sequence[StoredSnapshot]) -> Check:
    """The ``snapshots`` check: the first bad snapshot named (run, seq, what differs), or a pass.

    ``events`` are the log's decoded events, seqs 1.. (empty when its chain
    is broken or it does not fold, and then nothing is checked). A snapshot of another format is not
    checked (a resume ignores it too) and said so.

    Example::

        check = check_snapshots(run_id, envelopes, events, snapshots)
        assert check.ok, check.message
    """
    if not events:
        return Check("snapshots", False, "not checked: the log is broken or does not fold "
                     "(see above)")
    ours = sorted((s for s in snapshots if s.format == SNAPSHOT_FORMAT), key=lambda s: s.seq)
    others = len(snapshots) - len(ours)
    state = RunState(run_id=run_id)
    folded = 0
    for snap in ours:
        problem = _problem(run_id, envelopes, snap)
        if problem is None:
            while folded < snap.seq:
                evolve(state, events[folded])
                folded += 1
            problem = _difference(run_id, snap, state)
        if problem is not None:
            return Check("snapshots", False, problem, seq=snap.seq)
    plural = "s" if len(ours) != 1 else ""
    seqs = ", ".join(str(s.seq) for s in ours)
    message = (f"{len(ours)} snapshot{plural} (seq{plural} {seqs}) equal the log's fold there "
               "and hold its chain hash" if ours else "no snapshot of this version's format")
    if others:
        message += (f"; {others} of another format not checked (a resume ignores "
                    f"{'them' if others != 1 else 'it'})")
    return Check("snapshots", True, message)


def _problem(run_id: str, envelopes: Sequence[Envelope], snap: StoredSnapshot) -> str | None:
    where = f"The snapshot of run '{run_id}' at seq {snap.seq}"
    if snap.seq > len(envelopes):
        return (f"{where} is past the end of the log ({len(envelopes)} events): events were "
                "deleted after it was taken.")
    if envelopes[snap.seq - 1].hash != snap.hash:
        return (f"{where} names hash {snap.hash[:12]}…, but the log's chain hash there is "
                f"{envelopes[snap.seq - 1].hash[:12]}…: the snapshot or the log was edited "
                "after it was taken.")
    return None


def _difference(run_id: str, snap: StoredSnapshot, folded: RunState) -> str | None:
    where = f"The snapshot of run '{run_id}' at seq {snap.seq}"
    try:
        stored = decode_snapshot(snap.state)
    except SnapshotDecodeError as exc:
        return f"{where} cannot be used: {exc}; it was edited or is corrupt."
    differs = snapshot_differences(stored, folded)
    if not differs:
        return None
    shown = ", ".join(differs[:_SHOWN_FIELDS])
    more = f" and {len(differs) - _SHOWN_FIELDS} more" if len(differs) > _SHOWN_FIELDS else ""
    return (f"{where} differs from the log's fold there in {shown}{more}: the snapshot was "
            "edited (a resume starting from it would be wrong).")
