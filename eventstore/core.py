"""What both backends share: limits, the batch shape, the chain loop, reads, the runs view.

A backend (SQLite, PostgreSQL) subclasses :class:`StoreCore` and supplies
only the database round trips (``_write_batch``, ``_fetch``, ...; the argument
rules are in :mod:`ledgerflow.eventstore.rules`, the task exchange in
:mod:`ledgerflow.eventstore.core_tasks`); what must behave the same on every
backend lives here once, so the two cannot drift (they had: only PostgreSQL
clamped ``after`` and ``until`` and refused a seq past 2**63 - 1).

Example (what an append does, whichever backend)::

    items, at = check_append(run_id, events, expected_seq, at, max_event_bytes=limit)
    must_fit_in_seq_range(run_id, expected_seq, len(items))
    envelopes = chain_batch(batch, last_seq, last_hash)   # inside the backend's transaction
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar, Self

from .appending import check_append, is_count
from .core_features import StoreFeatures
from .envelope import Envelope, NewEvent, RunSummary, format_at
from .errors import (
    EventStoreError,
    InvalidAppendError,
    InvalidQueryError,
    StoreClosedError,
    StoreReadOnlyError,
    StoreUpgradeRequiredError,
)
from .pool import (
    WAKE_STATUSES,
    Claim,
    WorkerInfo,
    check_gone_s,
    check_names,
    check_wait,
    check_worker_id,
    encode_info,
)
from .rules import (
    DEFAULT_BUSY_TIMEOUT_MS,
    DEFAULT_MAX_EVENT_BYTES,
    MAX_LEASE_TTL_S,
    MAX_SEQ,
    READ_CHUNK_ROWS,
    Batch,
    chain_batch,
    clamp_range,
    lease_ttl,
    like_prefix,
    must_expect_the_last_seq,
    must_fit_in_seq_range,
    query_limit,
    summary_of,
)
from .schema import SCHEMA_VERSION

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

class StoreCore(StoreFeatures):
    """The public behaviour of every backend (the task exchange's in its base); round trips below.

    Example::

        class MyStore(StoreCore):
            async def _write_batch(self, batch): ...  # ... and the other abstract methods
    """

    path: str
    """Where the store lives (a file path, or a url without its password)."""
    max_event_bytes: int
    read_only: bool
    schema_version: int
    """The store's schema version as opened (older than SCHEMA_VERSION: reads only)."""
    _closed: bool
    _registered: dict[str, str]
    """The info (JSON) of each worker this store object registered, to re-register it."""
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
    async def _take_lease(self, run_id: str, owner: str, ttl_s: float) -> int | None:
        """Take or renew the lease; its fence, or None when another owner holds it live."""

    @abstractmethod
    async def _claim_run(
        self, owner: str, ttl_s: float, statuses: list[str], workflows: list[str] | None
    ) -> Claim | None: ...

    @abstractmethod
    async def _register_worker(self, worker_id: str, info: str, ttl_s: float) -> None: ...

    @abstractmethod
    async def _worker_heartbeat(self, worker_id: str, ttl_s: float) -> bool:
        """Renew the worker's row; False when the row is gone."""

    @abstractmethod
    async def _unregister_worker(self, worker_id: str) -> None: ...

    @abstractmethod
    async def _workers(self, include_gone_s: float) -> list[WorkerInfo]: ...

    @abstractmethod
    async def _notify_work(self) -> None: ...

    @abstractmethod
    async def _wait_for_work(self, timeout_s: float) -> bool: ...

    @abstractmethod
    async def _upgrade(self) -> tuple[int, int]:
        """Run the missing migrations in one transaction; ``(from_version, to_version)``."""

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

    def _must_not_be_read_only(self, operation: str) -> None:
        self._must_be_open()
        if self.read_only:
            raise StoreReadOnlyError(self.path, operation)

    def _must_be_writable(self, operation: str) -> None:
        """Open, not read-only, and at the current schema (writes need its tables)."""
        self._must_not_be_read_only(operation)
        if self.schema_version < SCHEMA_VERSION:
            raise StoreUpgradeRequiredError(self.path, self.schema_version, SCHEMA_VERSION)

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
        fence: int | None = None,
    ) -> list[Envelope]:
        """Append ``events`` atomically after ``expected_seq``; see :class:`EventStore`.

        With ``fence`` (from :meth:`take_lease` or :meth:`claim_run`), the
        append's own transaction also checks that the run's lease is live and
        carries that fence, or raises :class:`LeaseLostError` and appends
        nothing. An unfenced append leaving the run ``queued`` or ``running``
        (a submit, a resolve from outside the pool) wakes the workers.

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
        if fence is not None and not is_count(fence):
            raise InvalidAppendError(run_id, f"fence must be an int or None, not {fence!r}")
        batch = Batch(run_id, items, expected_seq, at, format_at(at), status, label, fence)
        envelopes = await self._write_batch(batch)
        if fence is None and status in WAKE_STATUSES:
            await self._wake_best_effort()
        return envelopes

    async def _wake_best_effort(self) -> None:
        # The write is committed; a failed wake-up must not make it look failed
        # (workers also poll, so a lost notification only delays them).
        with contextlib.suppress(EventStoreError):
            await self._notify_work()

    async def take_lease(self, run_id: str, owner: str, ttl_s: float) -> int | None:
        """Take or renew the run's lease for ``ttl_s`` seconds; its fence, or None if held.

        The fence grows by one each time the lease passes to a different owner
        (1 when first created); a renewal by the same owner keeps it. Pass it
        to :meth:`append` so a driver whose lease was taken over is refused.

        Example::

            fence = await store.take_lease("r1", "worker-7", ttl_s=30)
            if fence is not None:
                await store.append("r1", events, expected_seq=3, fence=fence)
        """
        self._must_be_writable(f"take the lease of run {run_id!r}")
        return await self._take_lease(run_id, owner, lease_ttl(run_id, ttl_s))

    async def try_lease(self, run_id: str, owner: str, ttl_s: float) -> bool:
        """Take, renew, or fail to take the run's lease; True when ``owner`` now holds it.

        ``ttl_s`` must be a number with ``0 < ttl_s <= MAX_LEASE_TTL_S`` (one
        day); anything else raises :class:`InvalidQueryError` on every backend.

        Example::

            if await store.try_lease("r1", owner="worker-7", ttl_s=30):
                ...  # drive the run; renew before 30 s pass
        """
        return await self.take_lease(run_id, owner, ttl_s) is not None

    async def release_lease(self, run_id: str, owner: str) -> None:
        """Drop the run's lease if ``owner`` holds it, then wake the pool; works after a failure."""
        self._must_be_writable(f"release the lease of run {run_id!r}")
        await self._release_lease(run_id, owner)
        await self._wake_best_effort()

    async def claim_run(
        self,
        owner: str,
        ttl_s: float,
        *,
        statuses: Sequence[str],
        workflows: Sequence[str] | None = None,
    ) -> Claim | None:
        """Atomically pick one unleased run in ``statuses`` (oldest update first) and lease it.

        ``workflows`` limits the pick to runs of those labels. Concurrent
        claimers (tasks, processes, hosts) never get the same run while its
        lease is live. None when no run is free.

        Example::

            claim = await store.claim_run("w1", 30, statuses=["queued"], workflows=["travel"])
        """
        operation = f"claim a run for {owner!r}"
        self._must_be_writable(operation)
        check_worker_id(operation, owner)
        ttl = lease_ttl("", ttl_s, operation)
        wanted = check_names(operation, "statuses", statuses)
        labels = None if workflows is None else check_names(operation, "workflows", workflows)
        return await self._claim_run(owner, ttl, wanted, labels)

    async def register_worker(self, worker_id: str, info: dict[str, Any], ttl_s: float) -> None:
        """Record a live worker (host, pid, workflows, ...) until ``ttl_s`` from now.

        Example::

            await store.register_worker("w1", {"host": "h", "pid": 42}, ttl_s=30)
        """
        operation = f"register worker {worker_id!r}"
        self._must_be_writable(operation)
        check_worker_id(operation, worker_id)
        text = encode_info(worker_id, info)
        await self._register_worker(worker_id, text, lease_ttl("", ttl_s, operation))
        self._registered[worker_id] = text

    async def worker_heartbeat(self, worker_id: str, ttl_s: float) -> None:
        """Keep the worker alive ``ttl_s`` more seconds; re-register it if its row vanished.

        Example::

            await store.worker_heartbeat("w1", ttl_s=30)
        """
        operation = f"renew worker {worker_id!r}"
        self._must_be_writable(operation)
        check_worker_id(operation, worker_id)
        ttl = lease_ttl("", ttl_s, operation)
        if not await self._worker_heartbeat(worker_id, ttl):
            await self._register_worker(worker_id, self._registered.get(worker_id, "{}"), ttl)

    async def unregister_worker(self, worker_id: str) -> None:
        """Remove the worker from the registry (a clean shutdown); unknown ids are ignored."""
        self._must_be_writable(operation := f"unregister worker {worker_id!r}")
        check_worker_id(operation, worker_id)
        await self._unregister_worker(worker_id)
        self._registered.pop(worker_id, None)

    async def workers(self, *, include_gone_s: float = 3600) -> list[WorkerInfo]:
        """The registered workers, live ones and those gone less than ``include_gone_s`` ago.

        A store before schema 2 has no registry yet: it lists none.

        Example::

            alive = [w for w in await store.workers() if w.alive]
        """
        self._must_be_open()
        gone_s = check_gone_s(include_gone_s)
        if self.schema_version < 2:  # the workers table came with schema 2
            return []
        return await self._workers(gone_s)

    async def notify_work(self) -> None:
        """Wake the workers waiting in :meth:`wait_for_work` (PostgreSQL NOTIFY; SQLite: none)."""
        self._must_not_be_read_only("notify the workers")
        await self._notify_work()

    async def wait_for_work(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for :meth:`notify_work`; True when woken, False on timeout.

        PostgreSQL LISTENs on a connection opened at the first wait (claim
        first, then wait). SQLite sleeps the timeout, returns False: poll.

        Example::

            while (claim := await store.claim_run("w1", 30, statuses=["queued"])) is None:
                await store.wait_for_work(5.0)
        """
        self._must_be_open()
        return await self._wait_for_work(check_wait(timeout_s))

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
