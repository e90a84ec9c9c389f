"""Versions of the log: what this ledgerflow reads, and the refusal of what it cannot.

A log written by an earlier version is upgraded as it is decoded
(:mod:`ledgerflow.machines.upcasting`); one written by a newer version is
refused, never guessed at: an event type this version does not know, or a
run started in a newer :data:`LOG_FORMAT`, raises :class:`EventTooNewError`.

Example::

    try:
        state = await load_run_state(store, run_id)
    except EventTooNewError as exc:
        print(exc.event_type, exc.seq)   # and: upgrade ledgerflow
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import msgspec

from ledgerflow.errors import LedgerflowError

__all__ = ["LOG_FORMAT", "LOG_FORMATS", "EventTooNewError", "NewerLogFormat"]

#: The log format this version writes and reads (every earlier one too). It
#: changes when what the log holds changes: an event gains a field, an event
#: is renamed. A run started by a newer version records a higher
#: ``RunStarted.log_format`` and this version refuses it instead of misreading
#: it; how to evolve the format is in :mod:`ledgerflow.machines.upcasting`.
LOG_FORMAT: Final = 2

#: What each log format changed, oldest first. A format is never edited once
#: released: logs written in it exist, and their bytes are hash-chained.
LOG_FORMATS: Final[Mapping[int, str]] = MappingProxyType({
    1: "ledgerflow 0.1 (runledger) up to 0.2 commit 7338ceb: RunStarted omits log_format; "
       "a retry's elapsed backoff is TimerFired; OutputReceived has no duration_ms. "
       "Fixtures: tests/replay/logs/v0_1/, tests/replay/logs/travel_demo.jsonl, "
       "tests/replay/fixtures/evolution/.",
    2: "TimerFired renamed RetryDue (it pairs with RetryScheduled; decoded from format 1 "
       "by upcasting.RENAMED_EVENTS); OutputReceived gains duration_ms, how long the "
       "agent's attempt took (None: not measured, as in every format-1 log).",
})


class NewerLogFormat(Exception):  # noqa: N818 - internal signal, decode_event translates it
    """Raised while msgspec builds a ``RunStarted`` of a newer log format.

    Not a ``ValueError``: msgspec would rewrap that as a plain ValidationError
    and the refusal would lose its class;
    :func:`ledgerflow.machines.events.decode_event` turns it into
    :class:`EventTooNewError`.
    """

    def __init__(self, log_format: int) -> None:
        self.log_format = log_format
        super().__init__(
            f"RunStarted has log format {log_format}; this version reads up to {LOG_FORMAT}.")


class EventTooNewError(LedgerflowError, msgspec.ValidationError):
    """An event written by a newer ledgerflow: an unknown type, or a newer log format.

    Also a ``msgspec.ValidationError``, so code that already refuses
    undecodable events refuses these too, with this message.
    """

    def __init__(
        self, event_type: str, *, seq: int | None = None, run_id: str | None = None,
        log_format: int | None = None,
    ) -> None:
        self.event_type = event_type
        self.seq = seq
        self.run_id = run_id
        self.log_format = log_format
        where = "".join((
            f" at seq {seq}" if seq is not None else "",
            f" of run '{run_id}'" if run_id else "",
        ))
        what = (f"starts a run in log format {log_format}, but this version reads up to "
                f"format {LOG_FORMAT}" if log_format is not None
                else "is not an event type this version knows")
        super().__init__(
            f"Event '{event_type}'{where} {what}: the log was written by a newer version "
            "of ledgerflow; upgrade ledgerflow (pip install -U ledgerflow) to read it."
        )

    def at(self, seq: int, run_id: str) -> EventTooNewError:
        """The same refusal, naming where in which log the event was found."""
        return EventTooNewError(self.event_type, seq=seq, run_id=run_id,
                                log_format=self.log_format)
