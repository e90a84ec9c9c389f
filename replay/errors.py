"""Errors of the replay package.

::

    LedgerflowError
    ├── LogDecodeError            an event's data is not a known, well-formed event
    ├── ReplayDivergenceError     the current code decides differently from the log
    ├── ForkError                 a fork point outside the run's log
    ├── SeqPastEndError           a --to seq after the run's last event
    ├── JsonArgumentError         a --goal/--output value that is not strict, loggable JSON
    ├── StorePathIsDirectoryError a --db that names a directory, not a store file
    ├── RunIdAmbiguousError       a run-id prefix that matches more than one run
    └── RerunWorkflowNotFoundError a run to rerun whose recorded workflow is not found here
"""

from __future__ import annotations

import os

from ledgerflow.errors import LedgerflowError

__all__ = [
    "ForkError",
    "JsonArgumentError",
    "LogDecodeError",
    "ReplayDivergenceError",
    "RerunWorkflowNotFoundError",
    "RunIdAmbiguousError",
    "SeqPastEndError",
    "StorePathIsDirectoryError",
]


class LogDecodeError(LedgerflowError):
    """An event in the log cannot be decoded into a domain event."""

    def __init__(self, run_id: str, seq: int, detail: str) -> None:
        self.run_id = run_id
        self.seq = seq
        super().__init__(
            f"Event seq {seq} of run '{run_id}' cannot be decoded: {detail}; the log was "
            f"edited or written by another program, and `ledgerflow verify {run_id}` checks "
            "the rest of it."
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


class SeqPastEndError(LedgerflowError):
    """A seq after the run's last event: well-formed, but the run has no such event.

    Refused (exit 1) like ``fork --at`` past the end, not a usage error: the
    same number is fine for a longer run.
    """

    def __init__(self, run_id: str, seq: int, last: int, option: str) -> None:
        self.run_id = run_id
        self.seq = seq
        self.last = last
        self.option = option
        super().__init__(
            f"Run '{run_id}' has {last} events, so {option} {seq} is past its end; "
            f"give a seq from 1 to {last}."
        )


class JsonArgumentError(LedgerflowError):
    """A JSON value given on the command line that cannot be logged as it is."""

    def __init__(self, what: str, problem: str) -> None:
        self.what = what
        self.problem = problem
        super().__init__(f"The value of {what} {problem}; pass strict JSON (or @file holding it).")


class RunIdAmbiguousError(LedgerflowError):
    """A run-id prefix that more than one run starts with."""

    def __init__(self, prefix: str, candidates: list[str], *, more: bool = False) -> None:
        self.prefix = prefix
        self.candidates = tuple(candidates)
        self.more = more
        shown = ", ".join(candidates) + (" and more" if more else "")
        super().__init__(
            f"The run id '{prefix}' is ambiguous: runs {shown} all start with it; "
            "give more of the id."
        )


class StorePathIsDirectoryError(LedgerflowError):
    """A ``--db`` naming a directory: SQLite would fail on it with a misleading I/O error."""

    def __init__(self, db: str, path: str) -> None:
        self.db = db
        self.path = path
        super().__init__(
            f"The store {db!r} is a directory, not a store file; give --db the path of a "
            f"SQLite file (for example {os.path.join(path, 'ledgerflow.db')!r}) or a "
            "postgresql:// url."
        )


class RerunWorkflowNotFoundError(LedgerflowError):
    """``rerun`` of a run whose recorded workflow cannot be found, and no --workflow given."""

    def __init__(self, run_id: str, why: str) -> None:
        self.run_id = run_id
        self.why = why
        super().__init__(
            f"Cannot rerun run '{run_id}': {why}; give the code to run with "
            "--workflow MODULE:WORKFLOW."
        )
