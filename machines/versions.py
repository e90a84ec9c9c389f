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

from typing import Final

import msgspec

from ledgerflow.errors import LedgerflowError

__all__ = ["LOG_FORMAT", "EventTooNewError", "NewerLogFormat"]

#: The log format this version writes and reads. It changes only when what
#: recorded events mean changes in a way an older version must not guess at:
#: a run started by a newer version records a higher ``RunStarted.log_format``
#: and this version refuses it instead of misreading it.
LOG_FORMAT: Final = 1


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
