"""Errors of the replay package.

::

    LedgerflowError
    ├── LogDecodeError            an event's data is not a known, well-formed event
    ├── ReplayDivergenceError     the current code decides differently from the log
    └── ForkError                 a fork point outside the run's log
"""

from __future__ import annotations

from ledgerflow.errors import LedgerflowError

__all__ = ["ForkError", "LogDecodeError", "ReplayDivergenceError"]


class LogDecodeError(LedgerflowError):
    """An event in the log cannot be decoded into a domain event."""

    def __init__(self, run_id: str, seq: int, detail: str) -> None:
        self.run_id = run_id
        self.seq = seq
        super().__init__(
            f"Event seq {seq} of run '{run_id}' cannot be decoded: {detail}; "
            "the log was edited or written by another program. Run `ledgerflow verify` on it."
        )


class ReplayDivergenceError(LedgerflowError):
    """The current code's decision differs from the recorded one."""

    def __init__(self, run_id: str, seq: int, recorded: str, decided: str) -> None:
        self.run_id = run_id
        self.seq = seq
        self.recorded = recorded
        self.decided = decided
        super().__init__(
            f"Run '{run_id}' diverges at seq {seq}: the log records {recorded}, "
            f"the current code decides {decided}."
        )


class ForkError(LedgerflowError):
    """A fork that cannot be made."""
