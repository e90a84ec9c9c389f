"""ledgerflow's event store: an append-only, hash-chained log of runs.

It knows nothing of agents or tasks: a run is a sequence of typed JSON events
(1, 2, 3, ... gapless), each chained to the one before it by SHA-256, plus a
``runs`` projection kept in the same transaction. SQLite is the embedded
backend; PostgreSQL (``open_store("postgresql://...")``, asyncpg) is the one
many workers share.

Example::

    import msgspec
    from ledgerflow.eventstore import NewEvent, check_chain, open_store

    async with open_store("runs.db") as store:
        await store.append(
            "r1", [NewEvent("RunStarted", msgspec.json.encode({"goal": "x"}))],
            expected_seq=0, status="running",
        )
        envs = await store.read_all("r1")
        assert check_chain("r1", envs) is None
"""

if not __name__.startswith("ledgerflow."):
    # Imported by its folder name (a script run from the repo root): a second
    # copy of the classes would record module paths, not ledgerflow's names.
    raise ImportError(f"Import ledgerflow.{__name__}, not {__name__}: the folder "
                      f"{__name__}/ installs as ledgerflow.{__name__}.")

from .envelope import (
    GENESIS_HASH,
    ChainProblem,
    Envelope,
    NewEvent,
    RunSummary,
    chain_hash,
    check_chain,
)
from .errors import (
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
    StoreFileSystemReadOnlyError,
    StoreFullError,
    StoreNotFoundError,
    StoreOpenError,
    StoreReadOnlyError,
    StoreServerReadOnlyError,
    StoreUpgradeRequiredError,
    StoreUrlError,
    TaskClaimLostError,
)
from .opening import StoreOpener, open_store, upgrade_store
from .pool import Claim, WorkerInfo
from .postgres import PostgresEventStore
from .protocol import EventStore
from .schema import SCHEMA_VERSION
from .sqlite import SQLiteEventStore
from .tasks import AgentLimit, TaskClaim, TaskExchangeRow, TaskFact, TaskOffer

__all__ = [
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
