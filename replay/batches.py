"""Splitting a log into decision batches: one fact and what was decided from it.

A run's log is a sequence of batches. Each starts with a fact (an event whose
class has ``FACT = True``: the goal, an output, an error, a timer, a
resolution...) and continues with the decisions derived from it. Replaying a
batch means feeding its fact to the decider and comparing what comes out.
``ForkedFrom`` is bookkeeping: it belongs to no batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from ledgerflow.machines import Event
from ledgerflow.machines.events import ForkedFrom

__all__ = ["Batch", "comparable", "split_batches"]


@dataclass(frozen=True, slots=True)
class Batch:
    """Events ``events`` recorded at ``seqs``; ``events[0]`` is the fact."""

    seqs: tuple[int, ...]
    events: tuple[Event, ...]

    @property
    def fact(self) -> Event:
        return self.events[0]


def split_batches(seqs: Sequence[int], events: Sequence[Event]) -> list[Batch]:
    """Group events into batches at each fact; ``ForkedFrom`` records are left out."""
    batches: list[Batch] = []
    cur_seqs: list[int] = []
    cur_events: list[Event] = []
    for seq, event in zip(seqs, events, strict=True):
        if isinstance(event, ForkedFrom):
            continue
        if event.FACT and cur_events:
            batches.append(Batch(tuple(cur_seqs), tuple(cur_events)))
            cur_seqs, cur_events = [], []
        cur_seqs.append(seq)
        cur_events.append(event)
    if cur_events:
        batches.append(Batch(tuple(cur_seqs), tuple(cur_events)))
    return batches


def comparable(event: Event) -> Event:
    """The event without its prose: two decisions are the same if these are equal."""
    return msgspec.structs.replace(event, reason="")
