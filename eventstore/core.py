"""What both backends share: limits, the batch shape, the chain loop, reads, the runs view.

A backend (SQLite, PostgreSQL) subclasses :class:`StoreCore` and supplies
only the database round trips (``_write_batch``, ``_fetch``, ``_runs_rows``,
...); everything that must behave the same on every backend lives here once,
so the two cannot drift again (they had: only PostgreSQL clamped ``after`` and
``until`` and refused a seq past 2**63 - 1).

Example (what an append does, whichever backend)::

    items, at = check_append(run_id, events, expected_seq, at, max_event_bytes=limit)
    must_fit_in_seq_range(run_id, expected_seq, len(items))
    envelopes = chain_batch(batch, last_seq, last_hash)   # inside the backend's transaction
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar, NamedTuple, Self

from .appending import check_append, is_count
from .envelope import Envelope, NewEvent, RunSummary, _hash_text, format_at
from .errors import (
    ConcurrencyError,
    InvalidAppendError,
    InvalidQueryError,
    StoreClosedError,
    StoreReadOnlyError,
)

__all__ = [
    "DEFAULT_BUSY_TIMEOUT_MS",
    "DEFAULT_MAX_EVENT_BYTES",
    "MAX_LEASE_TTL_S",
    "MAX_SEQ",
    "READ_CHUNK_ROWS",
    "Batch",
    "StoreCore",
    "chain_batch",
    "clamp_range",
    "like_prefix",
    "lease_ttl",
    "must_expect_the_last_seq",
    "must_fit_in_seq_range",
    "query_limit",
    "summary_of",
]

DEFAULT_BUSY_TIMEOUT_MS = 5000
DEFAULT_MAX_EVENT_BYTES = 1_048_576
READ_CHUNK_ROWS = 1000
MAX_SEQ = 2**63 - 1
"""The largest seq: both backends store seqs as signed 64-bit integers."""
MAX_LEASE_TTL_S = 86_400.0
"""The longest lease a driver may take: one day.

A lease is renewed every third of its ttl, so a long ttl buys the holder
nothing; it only keeps a crashed holder's run blocked for that long. A day
is far above any real use (the orchestrator's default is 30 s) and far
below what either backend can store (PostgreSQL overflows near 2**38 s;
SQLite would keep ``inf``, a lease that never expires)."""


class Batch(NamedTuple):
    """One append, validated, its time formatted once for every event it holds."""

    run_id: str
    items: list[tuple[str, bytes]]  # (type, data)
    expected_seq: int
    at: datetime
    at_text: str
    status: str | None
    label: str | None


def must_fit_in_seq_range(run_id: str, expected_seq: int, count: int) -> None:
    """Refuse an append whose last seq would pass :data:`MAX_SEQ` (the columns are int64)."""
    if expected_seq > MAX_SEQ - count:
        raise InvalidAppendError(
            run_id,
            f"expected_seq {expected_seq} plus {count} events is beyond the largest seq {MAX_SEQ}",
        )


def must_expect_the_last_seq(batch: Batch, last_seq: int) -> None:
    """Refuse the append when another writer moved the run past ``expected_seq``."""
    if last_seq != batch.expected_seq:
        raise ConcurrencyError(batch.run_id, batch.expected_seq, last_seq)


def lease_ttl(run_id: str, ttl_s: object) -> float:
    """``ttl_s`` as a float, or :class:`InvalidQueryError` unless ``0 < ttl_s <= MAX_LEASE_TTL_S``.

    NaN, infinities, bools and non-numbers are refused too: each backend
    turned them into a different failure, or into a lease that never expires.

    Example::

        >>> lease_ttl("r1", 30)
        30.0
    """
    # Compared before float(): an int like 2**5000 must be refused, not overflow.
    # NaN fails the chained comparison too.
    if (
        isinstance(ttl_s, bool)
        or not isinstance(ttl_s, int | float)
        or not 0 < ttl_s <= MAX_LEASE_TTL_S
    ):
        raise InvalidQueryError(
            f"take the lease of run {run_id!r}",
            f"ttl_s must be a number of seconds above 0 and at most {MAX_LEASE_TTL_S:.0f} "
            f"(one day), not {ttl_s!r}; renew a lease instead of taking a longer one",
        )
    return float(ttl_s)


def query_limit(operation: str, limit: object, minimum: int) -> int:
    """``limit`` clamped to :data:`MAX_SEQ`, or :class:`InvalidQueryError` unless an int >= minimum.

    Both databases take a LIMIT as a signed 64-bit integer, and no store holds
    more rows than that, so clamping changes no result; it keeps ``2**70``
    from becoming an OverflowError (SQLite) or a DataError (PostgreSQL). A
    bool is refused: ``limit=True`` is a mistake, not the number 1.

    Example::

        >>> query_limit("list runs", 2**70, 0)
        9223372036854775807
    """
    if not is_count(limit) or limit < minimum:
        raise InvalidQueryError(operation, f"limit must be an int >= {minimum}, not {limit!r}")
    return min(limit, MAX_SEQ)


def chain_batch(batch: Batch, last_seq: int, last_hash: str) -> list[Envelope]:
    """The envelopes of ``batch`` chained after the run's last (seq, hash): the chain loop.

    Example::

        >>> envs = chain_batch(batch, 0, GENESIS_HASH)
        >>> envs[0].seq, envs[0].prev_hash == GENESIS_HASH
        (1, True)
    """
    run_id, at, at_text = batch.run_id, batch.at, batch.at_text
    seq, prev = last_seq, last_hash
    envelopes = []
    for type_, data in batch.items:
        seq += 1
        digest = _hash_text(prev, run_id, seq, type_, at_text, data)
        envelopes.append(Envelope(run_id, seq, type_, at, data, prev, digest))
        prev = digest
    return envelopes


def clamp_range(after: int, until: int | None) -> tuple[int, int]:
    """The ``(lower, upper)`` seqs a read asks the database for, both within int64.

    A seq below 0 or above :data:`MAX_SEQ` matches nothing, so clamping
    changes no result; it keeps an out-of-range argument from becoming an
    overflow error in the driver.

    Example::

        >>> clamp_range(-5, 2**70)
        (-1, 9223372036854775807)
    """
    upper = MAX_SEQ if until is None else max(min(until, MAX_SEQ), -1)
    lower = max(min(after, MAX_SEQ), -1)
    return lower, upper


def like_prefix(prefix: str) -> str:
    r"""A LIKE pattern (escape character ``\``) matching the strings that start with ``prefix``.

    Example::

        >>> like_prefix("run_10%")
        'run\\_10\\%%'
    """
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def summary_of(row: Sequence[Any]) -> RunSummary:
    """A runs-projection row (times as ISO text or as datetimes) as a :class:`RunSummary`."""
    run_id, status, label, created_at, updated_at, last_seq = row
    if isinstance(created_at, str):
        created_at = datetime.fromisoformat(created_at)
    if isinstance(updated_at, str):
        updated_at = datetime.fromisoformat(updated_at)
    return RunSummary(run_id, status, label, created_at, updated_at, last_seq)


class StoreCore(ABC):
    """The public behaviour of every backend; subclasses provide the round trips.

    Example::

        class MyStore(StoreCore):
            async def _write_batch(self, batch): ...
            # ... and the other abstract methods
    """

    path: str
    """Where the store lives (a file path, or a url without its password)."""
    max_event_bytes: int
    read_only: bool
    _closed: bool
    _forbid_nul: ClassVar[bool] = False
    """True when the database's text cannot hold NUL characters (PostgreSQL)."""

    # --- what a backend supplies ---

    @abstractmethod
    async def _write_batch(self, batch: Batch) -> list[Envelope]:
        """Check ``expected_seq`` against the table, insert the chained batch, upsert runs."""

    @abstractmethod
    async def _fetch(
        self, run_id: str, lower: int, upper: int, limit: int | None
    ) -> list[Envelope]:
        """Return up to ``limit`` (None: all) envelopes with ``lower < seq <= upper``."""

    @abstractmethod
    async def _last_seq(self, run_id: str) -> int: ...

    @abstractmethod
    async def _runs_rows(self, status: str | None, limit: int | None) -> list[Sequence[Any]]: ...

    @abstractmethod
    async def _run_row(self, run_id: str) -> Sequence[Any] | None: ...

    @abstractmethod
    async def _match_runs(self, prefix: str, limit: int) -> list[str]: ...

    @abstractmethod
    async def _try_lease(self, run_id: str, owner: str, ttl_s: float) -> bool: ...

    @abstractmethod
    async def _release_lease(self, run_id: str, owner: str) -> None: ...

    @abstractmethod
    async def _lease_of(self, run_id: str) -> tuple[str, float] | None: ...

    @abstractmethod
    async def _shutdown(self) -> None:
        """Wait for the write in flight, mark the store closed, close the connections."""

    # --- shared rules ---

    def _must_be_open(self) -> None:
        if self._closed:
            raise StoreClosedError(self.path)

    def _must_be_writable(self, operation: str) -> None:
        self._must_be_open()
        if self.read_only:
            raise StoreReadOnlyError(self.path, operation)

    # --- writes ---

    async def append(
        self,
        run_id: str,
        events: Sequence[NewEvent],
        expected_seq: int,
        *,
        status: str | None = None,
        label: str | None = None,
        at: datetime | None = None,
    ) -> list[Envelope]:
        """Append ``events`` atomically after ``expected_seq``; see :class:`EventStore`.

        Example::

            envs = await store.append("r1", [NewEvent("RunStarted", b'{"goal":"x"}')],
                                      expected_seq=0, status="running")
            envs[0].seq   # 1

        If the calling task is cancelled while the commit is in flight, the
        append may or may not have been committed: re-read the run. A store
        error (full disk, lost server) rolls the whole append back, and the
        store stays usable.
        """
        self._must_be_writable(f"append to run {run_id!r}")
        items, at = check_append(
            run_id, events, expected_seq, at,
            max_event_bytes=self.max_event_bytes,
        )
        must_fit_in_seq_range(run_id, expected_seq, len(items))
        batch = Batch(run_id, items, expected_seq, at, format_at(at), status, label)
        return await self._write_batch(batch)

    async def try_lease(self, run_id: str, owner: str, ttl_s: float) -> bool:
        """Take, renew, or fail to take the run's lease; True when ``owner`` now holds it.

        ``ttl_s`` must be a number with ``0 < ttl_s <= MAX_LEASE_TTL_S`` (one
        day); anything else raises :class:`InvalidQueryError` on every backend.

        Example::

            if await store.try_lease("r1", owner="worker-7", ttl_s=30):
                ...  # drive the run; renew before 30 s pass
        """
        self._must_be_writable(f"take the lease of run {run_id!r}")
        return await self._try_lease(run_id, owner, lease_ttl(run_id, ttl_s))

    async def release_lease(self, run_id: str, owner: str) -> None:
        """Drop the run's lease if ``owner`` holds it; works after a failed append too."""
        self._must_be_writable(f"release the lease of run {run_id!r}")
        await self._release_lease(run_id, owner)

    async def lease_of(self, run_id: str) -> tuple[str, float] | None:
        """Return ``(owner, expires_at)`` of the run's live lease, or None when nobody holds it.

        ``expires_at`` is in epoch seconds on the clock the store judges
        expiry by (SQLite: this machine's ``time.time()``; PostgreSQL: the
        server's clock). An expired lease counts as not held.

        Example::

            held = await store.lease_of("r1")
            if held is not None:
                owner, expires_at = held
        """
        self._must_be_open()
        return await self._lease_of(run_id)

    # --- reads ---

    async def read(
        self, run_id: str, after: int = 0, until: int | None = None
    ) -> AsyncIterator[Envelope]:
        """Stream the run's envelopes ``after < seq <= until`` in seq order, 1,000 per query.

        Each chunk is one short query (keyset pagination on the primary key),
        so an abandoned stream holds no connection and no transaction.

        Example::

            async for env in store.read("r1", after=10, until=20):
                print(env.seq, env.type)
        """
        self._must_be_open()
        lower, upper = clamp_range(after, until)
        while lower < upper:
            chunk = await self._fetch(run_id, lower, upper, READ_CHUNK_ROWS)
            for envelope in chunk:
                yield envelope
            if len(chunk) < READ_CHUNK_ROWS:
                return
            lower = chunk[-1].seq

    async def read_all(
        self, run_id: str, after: int = 0, until: int | None = None
    ) -> list[Envelope]:
        """Return the run's envelopes ``after < seq <= until`` in one query (replay's path).

        Example::

            envs = await store.read_all("r1")
            assert check_chain("r1", envs) is None
        """
        self._must_be_open()
        lower, upper = clamp_range(after, until)
        if lower >= upper:
            return []
        return await self._fetch(run_id, lower, upper, None)

    async def last_seq(self, run_id: str) -> int:
        """Return the run's last seq, 0 when it has no events."""
        self._must_be_open()
        return await self._last_seq(run_id)

    async def runs(self, status: str | None = None, limit: int = 100) -> list[RunSummary]:
        """List runs from the projection, most recently updated first; ``limit < 0``: all.

        ``limit`` must be an int (not a bool); a huge one is clamped, as no
        store holds more than 2**63 - 1 runs.

        Example::

            failed = await store.runs(status="failed", limit=20)
        """
        self._must_be_open()
        if is_count(limit) and limit < 0:
            rows = await self._runs_rows(status, None)
        else:
            rows = await self._runs_rows(status, query_limit("list runs", limit, 0))
        return [summary_of(row) for row in rows]

    async def run(self, run_id: str) -> RunSummary | None:
        """Return the run's projection row, or None when it has no events."""
        self._must_be_open()
        row = await self._run_row(run_id)
        return summary_of(row) if row is not None else None

    async def match_runs(self, prefix: str, limit: int = 2) -> list[str]:
        """Return the ids of runs starting with ``prefix``, sorted, at most ``limit``.

        The match is case-sensitive; ``%`` and ``_`` in the prefix are literal. With the default
        ``limit=2`` a caller tells "exactly one run" from "ambiguous". ``limit`` must be an
        int >= 1 (not a bool); a huge one is clamped.

        Example::

            ids = await store.match_runs("7f3a")
            if len(ids) == 1:
                run_id = ids[0]
        """
        self._must_be_open()
        if not isinstance(prefix, str):
            raise InvalidQueryError("match run ids", f"the prefix must be a str, not {prefix!r}")
        limit = query_limit("match run ids", limit, 1)
        if self._forbid_nul and "\x00" in prefix:
            return []  # no stored run id holds NUL there
        return await self._match_runs(prefix, limit)

    # --- lifecycle ---

    async def close(self) -> None:
        """Refuse new calls, wait for the write in flight, close the connections; idempotent."""
        if self._closed:
            return
        await self._shutdown()

    async def __aenter__(self) -> Self:
        """Return the store itself; it is closed on leaving the block."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        await self.close()

    def __repr__(self) -> str:
        """Show the location, and whether the store is read-only or closed."""
        state = "closed" if self._closed else "read-only" if self.read_only else "open"
        return f"<{type(self).__name__} {self.path!r} {state}>"
