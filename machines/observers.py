"""Observers: code told about every batch of events a driver made durable.

Telemetry (the OpenTelemetry adapter), progress lines and live consoles
follow runs this way, from the same events the log holds, after they are
durable: what they show is never ahead of what a replay would show. An
observer must be quick and must not raise (a failure is logged and the
drive goes on); it never changes what is decided.

Example::

    class Count:
        def committed(self, run_id, events, *, first_seq, at):
            print(run_id, first_seq, [type(e).__name__ for e in events])

    orch = Orchestrator(store, observers=[Count()])
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from ledgerflow.machines import events as ev

__all__ = ["RunObserver", "tell_observers"]

log = logging.getLogger("ledgerflow")


@runtime_checkable
class RunObserver(Protocol):
    """Told of each durable batch: the run, its events, the seq of the first, their time."""

    def committed(self, run_id: str, events: Sequence[ev.Event], *, first_seq: int,
                  at: datetime) -> None: ...


def tell_observers(observers: Sequence[RunObserver], run_id: str, events: Sequence[ev.Event],
                   *, first_seq: int, at: datetime) -> None:
    """Call every observer; one that raises is logged and skipped, never fatal to the run."""
    for observer in observers:
        try:
            observer.committed(run_id, events, first_seq=first_seq, at=at)
        except Exception:
            log.exception("Observer %r failed on run %s at seq %d; the run goes on.",
                          observer, run_id, first_seq)
