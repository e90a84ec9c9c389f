"""The public names of eventstore, and the shape of its errors."""

from __future__ import annotations

from ledgerflow import eventstore
from ledgerflow.errors import LedgerflowError
from ledgerflow.eventstore import (
    ConcurrencyError,
    EventStoreError,
    EventTooLargeError,
    EventUnreadableError,
    InvalidAppendError,
    InvalidQueryError,
    LeaseLostError,
    NotAStoreError,
    SchemaVersionError,
    StoreBusyError,
    StoreClosedError,
    StoreFullError,
    StoreNotFoundError,
    StoreOpenError,
    StoreReadOnlyError,
    StoreUpgradeRequiredError,
    StoreUrlError,
)


def test_public_names_are_pinned_and_sorted() -> None:
    assert eventstore.__all__ == [
        "AgentLimit",
        "ChainProblem",
        "Claim",
        "ConcurrencyError",
        "Envelope",
        "EventStore",
        "EventStoreError",
        "EventTooLargeError",
        "EventUnreadableError",
        "GENESIS_HASH",
        "InvalidAppendError",
        "InvalidQueryError",
        "LeaseLostError",
        "NewEvent",
        "NotAStoreError",
        "PostgresEventStore",
        "RunSummary",
        "SCHEMA_VERSION",
        "SQLiteEventStore",
        "SchemaVersionError",
        "StoreBusyError",
        "StoreClosedError",
        "StoreFileSystemReadOnlyError",
        "StoreFullError",
        "StoreNotFoundError",
        "StoreOpenError",
        "StoreOpener",
        "StoreReadOnlyError",
        "StoreServerReadOnlyError",
        "StoreUpgradeRequiredError",
        "StoreUrlError",
        "TaskClaim",
        "TaskClaimLostError",
        "TaskExchangeRow",
        "TaskFact",
        "TaskOffer",
        "WorkerInfo",
        "chain_hash",
        "check_chain",
        "open_store",
        "upgrade_store",
    ]
    assert eventstore.__all__ == sorted(eventstore.__all__)
    assert all(hasattr(eventstore, name) for name in eventstore.__all__)


def test_every_store_error_is_a_ledgerflow_error() -> None:
    errors = [
        ConcurrencyError("r1", 5, 6),
        EventTooLargeError("r1", "Huge", 2000, 1000),
        InvalidAppendError("r1", "there are no events to append"),
        SchemaVersionError("runs.db", 3, 1),
        NotAStoreError("x.db", "it is not a SQLite database file"),
        StoreUrlError("ftp://x", "the scheme 'ftp' is unknown"),
        StoreOpenError("x.db", "SQLite cannot open or create the file"),
        StoreBusyError("runs.db", 5000),
        StoreClosedError("runs.db"),
        StoreNotFoundError("runs.db", "the file does not exist"),
        StoreReadOnlyError("runs.db", "append to run 'r1'"),
        StoreFullError("runs.db", "r1"),
        EventUnreadableError("runs.db", "r1", 3, "its time 'x' is not ISO-8601"),
        InvalidQueryError("match run ids", "limit must be an int >= 1, not 0"),
        StoreUpgradeRequiredError("runs.db", 1, 2),
        LeaseLostError("r1", 3, "worker-b", 4),
        LeaseLostError("r1", 3, None, 3),
        LeaseLostError("r1", 3, None, None),
    ]
    for error in errors:
        assert isinstance(error, EventStoreError)
        assert isinstance(error, LedgerflowError)
        message = str(error)
        assert message[0].isupper()
        assert message.endswith(".")


def test_concurrency_error_message_names_the_run_and_both_seqs() -> None:
    error = ConcurrencyError("r1", 5, 6)
    assert str(error) == (
        "Cannot append to run 'r1' at seq 5: the log is already at seq 6; another writer "
        "appended first. Re-read the run and decide again."
    )
    assert (error.run_id, error.expected_seq, error.actual_seq) == ("r1", 5, 6)


def test_invalid_append_is_also_a_value_error() -> None:
    assert isinstance(InvalidAppendError("r1", "x"), ValueError)


def test_lease_lost_error_says_who_took_the_run_over_and_what_to_do() -> None:
    error = LeaseLostError("r1", 3, "worker-b", 4)
    assert str(error) == (
        "Run 'r1''s lease was taken over (fence 3 < 4, now held by worker-b); nothing was "
        "appended, and this process must stop driving it."
    )
    assert (error.run_id, error.fence, error.holder) == ("r1", 3, "worker-b")
    assert error.current_fence == 4


def test_upgrade_required_error_names_the_command_that_fixes_it() -> None:
    error = StoreUpgradeRequiredError("runs.db", 1, 2)
    assert "run `ledgerflow db upgrade --db runs.db`" in str(error)
    assert (error.location, error.version, error.current) == ("runs.db", 1, 2)
