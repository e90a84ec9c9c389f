"""What a store class supplies to its feature mixins, declared once per kind.

The feature mixins (the task exchange, the vault, effect claims, snapshots)
are written against these: the SQLite ones call the writer and reader round
trips, the PostgreSQL ones the pooled-connection round trip, and the
backend-independent ones the store's open/writable guards. The store classes
(:class:`~ledgerflow.eventstore.sqlite.SQLiteEventStore`,
:class:`~ledgerflow.eventstore.postgres.PostgresEventStore`,
:class:`~ledgerflow.eventstore.core.StoreCore`) define them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import aiosqlite

__all__ = ["PostgresRoundTrips", "SQLiteRoundTrips", "StoreGuards"]

_T = TypeVar("_T")


class SQLiteRoundTrips:
    """The writer (one transaction each, in turn) and reader round trips of a SQLite store."""

    if TYPE_CHECKING:
        _reader: aiosqlite.Connection

        async def _write(self, fn: Callable[..., _T], *args: object, **kw: Any) -> _T: ...

        async def _call(
            self,
            conn: aiosqlite.Connection,
            fn: Callable[..., _T],
            *args: object,
            run_id: str | None = None,
            expected_seq: int | None = None,
        ) -> _T: ...


class PostgresRoundTrips:
    """The pooled-connection round trip of a PostgreSQL store, and its schema's name."""

    schema: str

    if TYPE_CHECKING:
        async def _call(
            self,
            fn: Callable[..., Awaitable[_T]],
            *args: object,
            run_id: str | None = None,
            expected_seq: int | None = None,
        ) -> _T: ...


class StoreGuards(ABC):
    """The checks every store method makes first (see :class:`StoreCore`)."""

    schema_version: int

    @abstractmethod
    def _must_be_open(self) -> None: ...

    @abstractmethod
    def _must_be_writable(self, operation: str) -> None: ...
