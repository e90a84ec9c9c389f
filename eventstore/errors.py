"""The errors the event store raises on purpose.

Every one derives from :class:`EventStoreError`, itself a
:class:`ledgerflow.errors.LedgerflowError`::

    LedgerflowError
    └── EventStoreError
        ├── ConcurrencyError        another writer appended first (stale expected_seq)
        ├── EventTooLargeError      one event's data is over max_event_bytes
        ├── InvalidAppendError      the append's arguments are malformed (also a ValueError)
        ├── SchemaVersionError      the file was written by a newer ledgerflow
        ├── NotAStoreError          the file is SQLite but not a ledgerflow store, or not SQLite
        ├── StoreUrlError           open_store() cannot read the url or path
        ├── StoreOpenError          the file cannot be opened or created at all
        ├── StoreBusyError          the database stayed locked past the busy timeout
        ├── StoreClosedError        the store was used after close()
        ├── StoreNotFoundError      open_store(create=False) found no store at the location
        ├── StoreReadOnlyError      a write (append, lease) on a store opened read_only=True
        ├── StoreUpgradeRequiredError  a write on a store at an older schema (run db upgrade)
        ├── LeaseLostError          a fenced append after the run's lease passed on or lapsed
        ├── TaskClaimLostError      a task claim was superseded (re-claimed) or its offer withdrawn
        ├── StoreFullError          the disk (or the database's size limit) is full
        ├── EventUnreadableError    a stored row cannot be read back as an envelope (edited file)
        └── InvalidQueryError       a query's or lease's arguments are malformed (also a ValueError)

Each message is one sentence that says what happened, where, why, and the
fix; the values are kept as attributes so callers never parse messages::

    try:
        await store.append("r1", events, expected_seq=5)
    except ConcurrencyError as exc:
        exc.run_id, exc.expected_seq, exc.actual_seq   # ('r1', 5, 6)
"""

from __future__ import annotations

from ledgerflow.errors import LedgerflowError

__all__ = [
    "ConcurrencyError",
    "EventStoreError",
    "EventTooLargeError",
    "EventUnreadableError",
    "InvalidAppendError",
    "InvalidQueryError",
    "LeaseLostError",
    "NotAStoreError",
    "SchemaVersionError",
    "StoreBusyError",
    "StoreClosedError",
    "StoreFullError",
    "StoreNotFoundError",
    "StoreOpenError",
    "StoreReadOnlyError",
    "StoreUpgradeRequiredError",
    "StoreUrlError",
    "TaskClaimLostError",
]


class EventStoreError(LedgerflowError):
    """Base class of every error the event store raises on purpose."""


class ConcurrencyError(EventStoreError):
    """An append named a stale ``expected_seq``: another writer appended first.

    ``actual_seq`` is the run's last seq at the time of the refusal, or
    ``None`` when the database reported a duplicate seq without saying which.
    """

    def __init__(self, run_id: str, expected_seq: int, actual_seq: int | None) -> None:
        self.run_id = run_id
        self.expected_seq = expected_seq
        self.actual_seq = actual_seq
        if actual_seq is None:
            where = "one of the new seqs already exists"
        else:
            where = f"the log is already at seq {actual_seq}"
        super().__init__(
            f"Cannot append to run {run_id!r} at seq {expected_seq}: {where}; "
            "another writer appended first. Re-read the run and decide again."
        )


class EventTooLargeError(EventStoreError):
    """One event's encoded data is larger than the store's ``max_event_bytes``."""

    def __init__(self, run_id: str, type: str, size: int, limit: int) -> None:
        self.run_id = run_id
        self.type = type
        self.size = size
        self.limit = limit
        super().__init__(
            f"Cannot append event {type!r} to run {run_id!r}: its data is {size} bytes, "
            f"over the store's limit of {limit} bytes, so nothing was written. "
            "Store large payloads elsewhere and record a reference, or open the store "
            "with a larger max_event_bytes."
        )


class InvalidAppendError(EventStoreError, ValueError):
    """The arguments of an append are malformed; nothing was written."""

    def __init__(self, run_id: str, problem: str) -> None:
        self.run_id = run_id
        self.problem = problem
        super().__init__(f"Cannot append to run {run_id!r}: {problem}; nothing was written.")


class SchemaVersionError(EventStoreError):
    """The store file was written by a newer ledgerflow than this one."""

    def __init__(self, path: str, found: int, supported: int) -> None:
        self.path = path
        self.found = found
        self.supported = supported
        super().__init__(
            f"The store {path!r} was written by a newer ledgerflow (schema {found}); "
            f"this version reads schema {supported}. Upgrade ledgerflow."
        )


class NotAStoreError(EventStoreError):
    """The file exists but is not a ledgerflow store (or not SQLite at all)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"The file {path!r} is not a ledgerflow store: {reason}. "
            "It was left untouched; point ledgerflow at a new file or at an existing store."
        )


class StoreUrlError(EventStoreError):
    """``open_store`` was given a url or path it cannot use."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"Cannot open the store {url!r}: {reason}.")


class StoreOpenError(EventStoreError):
    """The database file cannot be opened or created (missing folder, permissions).

    ``read_only_would_work`` is True when the store could still be opened
    with ``read_only=True`` (the file or its folder is only read-only for this
    user); ``problem`` is then the reason without that fix, for a caller that
    offers its own (the CLI).

    Example::

        >>> StoreOpenError("runs.db", "the file is read-only", read_only_would_work=True).reason
        'the file is read-only; open it with read_only=True to read it'
    """

    def __init__(self, path: str, reason: str, *, read_only_would_work: bool = False) -> None:
        self.path = path
        self.problem = reason
        self.read_only_would_work = read_only_would_work
        self.reason = (f"{reason}; open it with read_only=True to read it"
                       if read_only_would_work else reason)
        super().__init__(
            f"Cannot open the store {path!r}: {self.reason}. "
            "Check that its folder exists and is writable."
        )


class StoreBusyError(EventStoreError):
    """The database stayed locked by another connection past the busy timeout."""

    def __init__(self, path: str, busy_timeout_ms: int) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        super().__init__(
            f"The store {path!r} stayed locked by another writer for more than "
            f"{busy_timeout_ms} ms; retry later, or open the store with a larger busy_timeout_ms."
        )


class StoreClosedError(EventStoreError):
    """The store was used after ``close()``."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"The store {path!r} was used after it was closed; open it again with open_store()."
        )


class StoreNotFoundError(EventStoreError):
    """``open_store(..., create=False)`` (or ``read_only=True``) found no store to open.

    Raised for a missing file, a zero-byte or blank SQLite file, and a missing
    or empty PostgreSQL schema: a read never creates a store.
    """

    def __init__(self, location: str, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(
            f"There is no ledgerflow store at {location!r}: {reason}; nothing was created. "
            "Check the path or url (and its ?schema=), or create the store first "
            "by running a workflow against it."
        )


class StoreReadOnlyError(EventStoreError):
    """A write (append, lease) was asked of a store opened with ``read_only=True``."""

    def __init__(self, location: str, operation: str) -> None:
        self.location = location
        self.operation = operation
        super().__init__(
            f"Cannot {operation} on the store {location!r}: it was opened read-only; "
            "open it with open_store(..., read_only=False) to write."
        )


class StoreFileSystemReadOnlyError(StoreReadOnlyError):
    """A write found the file system holding a SQLite store read-only (e.g. remounted
    read-only after a disk error); nothing of it was acknowledged.

    A disk that failed in the middle of the commit may still have kept it (as
    a crash may): a resume reads the log and goes on from what it holds."""

    def __init__(self, location: str, run_id: str | None) -> None:
        self.run_id = run_id
        what = f"the write to run {run_id!r}" if run_id is not None else "the write"
        EventStoreError.__init__(
            self,
            f"The file system holding the store {location!r} is read-only, so {what} was "
            "not acknowledged (a disk that failed mid-commit may still have kept it: resume "
            "goes on from what the log holds); make it writable again (check the disk), "
            "then resume the run.")
        self.location = location
        self.operation = "write"


class StoreServerReadOnlyError(StoreReadOnlyError):
    """The PostgreSQL server refused a write: the session is read-only, or the role may
    no longer write the store's tables. The write was rolled back, nothing acknowledged."""

    def __init__(self, location: str, run_id: str | None, why: str) -> None:
        self.run_id = run_id
        what = f"the write to run {run_id!r}" if run_id is not None else "the write"
        EventStoreError.__init__(
            self,
            f"The PostgreSQL server refused {what} on the store {location!r} ({why}), so it "
            "was rolled back and nothing was acknowledged; once the server takes writes "
            "again, resume the run.")
        self.location = location
        self.operation = "write"


class StoreFullError(EventStoreError):
    """The database could not grow: the disk, quota or size limit is full.

    The failed write was rolled back as a whole; every acknowledged event is
    kept and the store stays usable for reads, lease releases and smaller writes.
    """

    def __init__(self, location: str, run_id: str | None) -> None:
        self.location = location
        self.run_id = run_id
        what = f"the write to run {run_id!r}" if run_id is not None else "the write"
        super().__init__(
            f"The store {location!r} is full, so {what} was rolled back and nothing of it "
            "was kept; free disk space (or raise the database's size limit), then retry."
        )


class EventUnreadableError(EventStoreError):
    """A stored event row cannot be turned back into an envelope (the file was edited)."""

    def __init__(self, location: str, run_id: str, seq: int | None, problem: str) -> None:
        self.location = location
        self.run_id = run_id
        self.seq = seq
        self.problem = problem
        where = f"event seq {seq} of run {run_id!r}" if seq is not None else f"run {run_id!r}"
        super().__init__(
            f"Cannot read {where} in the store {location!r}: {problem}, so the row was "
            "altered outside ledgerflow; restore the store from a backup or fork the run "
            "before that seq."
        )


class InvalidQueryError(EventStoreError, ValueError):
    """The arguments of a query (a runs listing, a prefix search, a lease) are malformed."""

    def __init__(self, operation: str, problem: str) -> None:
        self.operation = operation
        self.problem = problem
        super().__init__(f"Cannot {operation}: {problem}.")


class StoreUpgradeRequiredError(EventStoreError):
    """A write on a store whose schema is older than this ledgerflow's; reads still work.

    Opening never migrates a store: ``ledgerflow db upgrade --db URL`` (or
    :func:`ledgerflow.eventstore.upgrade_store`) does, explicitly.

    Example::

        >>> StoreUpgradeRequiredError("runs.db", 1, 2).version
        1
    """

    def __init__(self, location: str, version: int, current: int) -> None:
        self.location = location
        self.version = version
        self.current = current
        super().__init__(
            f"The store {location!r} is at schema version {version} and this ledgerflow "
            f"writes version {current}, so nothing was written (reads still work); "
            f"run `ledgerflow db upgrade --db {location}` to migrate it, then retry."
        )


class LeaseLostError(EventStoreError):
    """A fenced append found the run's lease taken over, released or lapsed; nothing was written.

    ``fence`` is the token the append carried; ``holder`` is who holds a live
    lease of the run now (None: nobody); ``current_fence`` is the lease's
    fence now (None: no lease row).

    Example::

        >>> LeaseLostError("r1", 3, "worker-b", 4).holder
        'worker-b'
    """

    def __init__(
        self, run_id: str, fence: int, holder: str | None, current_fence: int | None = None
    ) -> None:
        self.run_id = run_id
        self.fence = fence
        self.holder = holder
        self.current_fence = current_fence
        if current_fence is None:
            what = f"Run {run_id!r} has no lease any more (fence {fence} was released)"
        elif current_fence != fence:
            now = f"now held by {holder}" if holder is not None else "nobody holds it now"
            what = (f"Run {run_id!r}'s lease was taken over "
                    f"(fence {fence} < {current_fence}, {now})")
        else:
            what = f"Run {run_id!r}'s lease (fence {fence}) expired before the append"
        super().__init__(
            f"{what}; nothing was appended, and this process must stop driving it."
        )


class TaskClaimLostError(EventStoreError):
    """A task claim is no longer its offer's current one; nothing was written.

    Another worker re-claimed the offer after this claim lapsed (a higher
    token), or the run's owner withdrew the offer (or the attempt is over).
    The executor stops: the run's owner decides what happens to the task.

    Example::

        >>> TaskClaimLostError("r1", "price", 1, 2).token
        2
    """

    def __init__(self, run_id: str, task_id: str, attempt: int, token: int) -> None:
        self.run_id = run_id
        self.task_id = task_id
        self.attempt = attempt
        self.token = token
        super().__init__(
            f"The claim (token {token}) of task {task_id!r} attempt {attempt} of run "
            f"{run_id!r} is no longer current: the offer was claimed again after the claim "
            "lapsed, or withdrawn, so nothing was written; stop this attempt (renew the "
            "claim before it expires to keep it)."
        )
