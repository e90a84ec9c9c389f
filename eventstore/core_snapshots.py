"""The store's public methods for state snapshots, once for both backends.

A snapshot is a run's folded state at one seq, kept beside the log so that a
long run resumes without folding it all (:mod:`ledgerflow.machines.snapshots`
makes and reads them). It is a cache, never a source of truth: it is outside
the hash chain, its ``hash`` must equal the chain hash of the event at its
``seq`` before anyone uses it, and ``verify`` refolds the log to check it.

A base of ``StoreCore``; the backends' round trips are
:mod:`ledgerflow.eventstore.sqlite_snapshots` and :mod:`ledgerflow.eventstore.postgres_snapshots`.

Example::

    await store.put_snapshot("r1", 2000, env.hash, 1, payload)
    snap = await store.latest_snapshot("r1", at_most_seq=2500)
    await store.prune_snapshots("r1", keep=2)
"""

from __future__ import annotations

import re
from abc import abstractmethod
from dataclasses import dataclass
from datetime import datetime

from .appending import is_count
from .errors import InvalidQueryError
from .mixin_needs import StoreGuards
from .rules import MAX_SEQ
from .tasks import check_name

__all__ = ["SNAPSHOTS_SCHEMA_VERSION", "SnapshotCore", "StoredSnapshot"]

SNAPSHOTS_SCHEMA_VERSION = 4
"""The first schema with the ``run_snapshots`` table (older stores read none)."""

_HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    """One stored snapshot: the run's state (``state``, in ``format``) after event ``seq``.

    ``hash`` is the chain hash of the event at ``seq`` when the snapshot was
    taken: a log edited or rewritten since no longer holds it there.

    Example::

        snap = await store.latest_snapshot("r1")
        if snap is not None:
            print(snap.seq, snap.format, len(snap.state))
    """

    run_id: str
    seq: int
    hash: str
    format: int
    state: bytes
    created_at: datetime


def _check_seq(operation: str, what: str, value: object) -> int:
    if not is_count(value) or not 1 <= value <= MAX_SEQ:
        raise InvalidQueryError(operation, f"{what} must be an int >= 1, not {value!r}")
    return value


def _check_keep(operation: str, keep: object) -> int:
    if not is_count(keep) or keep < 1:
        raise InvalidQueryError(operation, f"keep must be an int >= 1, not {keep!r}")
    return min(keep, MAX_SEQ)


class SnapshotCore(StoreGuards):
    """State snapshots of long runs: the store methods (see :class:`EventStore`)."""

    # --- what a backend supplies ---

    @abstractmethod
    async def _put_snapshot(  # noqa: PLR0917 - the row's columns, in their order
        self, run_id: str, seq: int, hash_: str, format_: int, state: bytes, keep: int | None
    ) -> None: ...

    @abstractmethod
    async def _latest_snapshot(self, run_id: str, at_most: int) -> StoredSnapshot | None: ...

    @abstractmethod
    async def _snapshots(self, run_id: str) -> list[StoredSnapshot]: ...

    @abstractmethod
    async def _prune_snapshots(self, run_id: str, keep: int) -> int: ...

    # --- the public methods ---

    async def put_snapshot(
        self, run_id: str, seq: int, hash: str, format: int, state: bytes, *,
        keep: int | None = None,
    ) -> None:
        """Store ``state`` as the run's snapshot after event ``seq`` (replacing one there).

        Not part of the chain and never fenced: a snapshot is used only while
        ``hash`` is still the chain hash at ``seq``, whoever wrote it. With
        ``keep``, the run's older snapshots but the ``keep`` latest are deleted
        in the same transaction (:meth:`prune_snapshots`).

        Example::

            await store.put_snapshot("r1", 2000, envelopes[-1].hash, 1, payload, keep=2)
        """
        self._must_be_writable(operation := f"store a snapshot of run {run_id!r}")
        run = check_name(operation, "the run id", run_id)
        at = _check_seq(operation, "the seq", seq)
        if not isinstance(hash, str) or not _HASH.fullmatch(hash):
            raise InvalidQueryError(operation, f"the hash must be 64 lowercase hex digits, "
                                    f"not {hash!r}")
        if not is_count(format) or not 1 <= format <= 2**31 - 1:
            raise InvalidQueryError(operation, f"the format must be an int >= 1, not {format!r}")
        if not isinstance(state, bytes) or not state:
            raise InvalidQueryError(operation, "the state must be non-empty bytes, not "
                                    f"{type(state).__name__}")
        kept = None if keep is None else _check_keep(operation, keep)
        await self._put_snapshot(run, at, hash, format, state, kept)

    async def latest_snapshot(
        self, run_id: str, at_most_seq: int | None = None
    ) -> StoredSnapshot | None:
        """The run's snapshot with the highest seq (``<= at_most_seq``), or None.

        A store older than schema 4 has none.

        Example::

            snap = await store.latest_snapshot("r1", at_most_seq=12_000)
        """
        self._must_be_open()
        operation = f"read the snapshots of run {run_id!r}"
        run = check_name(operation, "the run id", run_id)
        upper = MAX_SEQ if at_most_seq is None else _check_seq(
            operation, "at_most_seq", at_most_seq)
        if self.schema_version < SNAPSHOTS_SCHEMA_VERSION:
            return None
        return await self._latest_snapshot(run, upper)

    async def snapshots(self, run_id: str) -> list[StoredSnapshot]:
        """Every stored snapshot of the run, lowest seq first (what ``verify`` checks).

        Example::

            for snap in await store.snapshots("r1"):
                print(snap.seq, snap.hash[:12])
        """
        self._must_be_open()
        run = check_name(f"read the snapshots of run {run_id!r}", "the run id", run_id)
        if self.schema_version < SNAPSHOTS_SCHEMA_VERSION:
            return []
        return await self._snapshots(run)

    async def prune_snapshots(self, run_id: str, keep: int) -> int:
        """Delete the run's snapshots but the ``keep`` latest; how many were deleted.

        Example::

            await store.prune_snapshots("r1", keep=2)
        """
        self._must_be_writable(operation := f"prune the snapshots of run {run_id!r}")
        run = check_name(operation, "the run id", run_id)
        return await self._prune_snapshots(run, _check_keep(operation, keep))
