"""The ``EventStore`` protocol every backend implements (SQLite and PostgreSQL).

The contract, whichever backend:

- ``append`` is atomic: all the events and the runs-projection update are
  committed together, or nothing is. Seqs are gapless per run (1, 2, 3, ...)
  and each envelope is hash-chained to the one before it.
- Optimistic concurrency: ``expected_seq`` is the last seq the caller has
  seen (0 for a new run). If another writer appended since, the append is
  refused with :class:`ConcurrencyError` and nothing is written.
- Reads return envelopes in seq order, ``after < seq <= until``.
- Leases give one owner at a time the right to drive a run, until expiry.
  Each carries a fence that grows when the lease passes to another owner;
  an append made with ``fence=`` is refused (:class:`LeaseLostError`) once
  the lease has moved on or lapsed.
- ``claim_run`` hands each free run in the asked statuses to one claimer;
  ``register_worker`` .. ``workers`` keep the registry of live workers;
  ``notify_work`` / ``wait_for_work`` wake idle workers (PostgreSQL
  LISTEN/NOTIFY; SQLite polls).
- The task exchange spreads one run's task attempts over the pool: the
  run's owner ``offer_tasks`` (fenced), any worker ``claim_task`` (within
  per-agent limits, atomically) and ``post_task_fact``; the owner reads
  ``task_facts``, appends its decisions and ``answer_task_facts``, which the
  executor polls with ``task_fact_answer``. ``acquire_slot`` /
  ``release_slot`` are a pool-wide counting semaphore.
- Opening never migrates: a store at an older schema reads, and its writes
  raise :class:`StoreUpgradeRequiredError` until ``upgrade_store`` runs.
- A store error (full disk, lost server) rolls the failed write back and
  leaves the store usable: the next ``release_lease``, read or append works.
- A store opened with ``open_store(..., read_only=True)`` writes nothing;
  its appends and leases raise :class:`StoreReadOnlyError`.

Example::

    async with open_store("runs.db") as store:
        envs = await store.append("r1", [NewEvent("RunStarted", b'{"goal":"x"}')],
                                  expected_seq=0, status="running", label="travel")
        async for env in store.read("r1"):
            print(env.seq, env.type)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

from .envelope import Envelope, NewEvent, RunSummary
from .pool import Claim, WorkerInfo
from .protocol_effects import EffectClaimStore
from .protocol_secrets import SecretStore
from .protocol_snapshots import SnapshotStore
from .tasks import AgentLimit, TaskClaim, TaskExchangeRow, TaskFact, TaskOffer

__all__ = ["EventStore"]


@runtime_checkable
class EventStore(SnapshotStore, EffectClaimStore, SecretStore, Protocol):
    """An append-only, hash-chained event log of many runs, with a runs projection."""

    max_event_bytes: int
    """The largest ``data`` one event may carry, in bytes."""

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
        """Append ``events`` atomically after seq ``expected_seq``; return their envelopes.

        ``status`` and ``label`` update the run's projection row when given.
        With ``fence``, the append commits only while the run's live lease
        carries it (:class:`LeaseLostError` otherwise, nothing written).
        ``at`` (tz-aware; default: now, UTC) is recorded on every event of the
        batch. Raises :class:`ConcurrencyError` when ``expected_seq`` is
        stale, :class:`EventTooLargeError` when an event is over
        ``max_event_bytes``, :class:`InvalidAppendError` for malformed input.
        """
        ...

    def read(
        self, run_id: str, after: int = 0, until: int | None = None
    ) -> AsyncIterator[Envelope]:
        """Stream the run's envelopes with ``after < seq <= until``, in seq order."""
        ...

    async def read_all(
        self, run_id: str, after: int = 0, until: int | None = None
    ) -> list[Envelope]:
        """Return the run's envelopes with ``after < seq <= until``, in the fewest round trips."""
        ...

    async def last_seq(self, run_id: str) -> int:
        """Return the run's last seq, 0 when it has no events."""
        ...

    async def runs(self, status: str | None = None, limit: int = 100) -> list[RunSummary]:
        """List runs, most recently updated first, optionally only those with ``status``.

        Each summary's ``owner`` is the run's live lease holder (None: nobody).
        """
        ...

    async def run(self, run_id: str) -> RunSummary | None:
        """Return the run's projection row, or None when the run has no events."""
        ...

    async def match_runs(self, prefix: str, limit: int = 2) -> list[str]:
        """Return the ids of runs starting with ``prefix``, sorted, at most ``limit``.

        ``%`` and ``_`` are literal; the match is case-sensitive. Two results
        with the default ``limit`` mean the prefix is ambiguous.
        """
        ...

    async def lease_of(self, run_id: str) -> tuple[str, float] | None:
        """Return ``(owner, expires_at)`` of the run's live lease, or None when nobody holds it.

        ``expires_at`` is epoch seconds on the clock the store judges expiry by.
        """
        ...

    async def take_lease(self, run_id: str, owner: str, ttl_s: float) -> int | None:
        """Take or renew the run's lease; its fence, or None if another owner holds it live."""
        ...

    async def try_lease(self, run_id: str, owner: str, ttl_s: float) -> bool:
        """Take or renew the run's lease for ``ttl_s`` seconds; False if another owner holds it."""
        ...

    async def claim_run(
        self,
        owner: str,
        ttl_s: float,
        *,
        statuses: Sequence[str],
        workflows: Sequence[str] | None = None,
    ) -> Claim | None:
        """Lease the oldest-updated free run in ``statuses`` (labels in ``workflows``); or None."""
        ...

    async def register_worker(self, worker_id: str, info: dict[str, Any], ttl_s: float) -> None:
        """Record a live worker until ``ttl_s`` from now (its row is replaced)."""
        ...

    async def worker_heartbeat(self, worker_id: str, ttl_s: float) -> None:
        """Keep the worker alive ``ttl_s`` more seconds; re-register it if its row vanished."""
        ...

    async def unregister_worker(self, worker_id: str) -> None:
        """Remove the worker's row (a clean shutdown)."""
        ...

    async def workers(self, *, include_gone_s: float = 3600) -> list[WorkerInfo]:
        """The workers alive or gone less than ``include_gone_s`` ago, with the runs they hold."""
        ...

    async def notify_work(self) -> None:
        """Wake the workers waiting in :meth:`wait_for_work` (a no-op on SQLite)."""
        ...

    async def wait_for_work(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for a notification; True when woken, False on timeout."""
        ...

    async def release_lease(self, run_id: str, owner: str) -> None:
        """Give up the run's lease if ``owner`` holds it (then wake the pool); else do nothing."""
        ...

    async def offer_tasks(
        self, run_id: str, offers: Sequence[TaskOffer], *, seq: int, fence: int | None
    ) -> None:
        """Upsert one offer per (run, task, attempt); an existing one keeps its claim, fenced."""
        ...

    async def claim_task(
        self,
        owner: str,
        ttl_s: float,
        *,
        workflows: Sequence[str],
        limits: Mapping[tuple[str, str], AgentLimit] | None = None,
    ) -> TaskClaim | None:
        """Claim the oldest free offer of ``workflows`` within its agent's limit; or None."""
        ...

    async def renew_task_claim(self, claim: TaskClaim, ttl_s: float) -> None:
        """Extend the claim; :class:`TaskClaimLostError` once it is not the offer's current one."""
        ...

    async def post_task_fact(self, claim: TaskClaim, kind: str, data: bytes) -> int:
        """Post a ``"step"`` or ``"outcome"`` fact under a current claim; its id."""
        ...

    async def task_facts(self, run_id: str) -> list[TaskFact]:
        """The run's unanswered facts of current claims, in id order."""
        ...

    async def answer_task_facts(
        self, run_id: str, answers: Mapping[int, bool], *, fence: int | None
    ) -> None:
        """Answer facts (True: durable in the log; False: refused); an outcome ends its attempt."""
        ...

    async def task_fact_answer(self, fact_id: int, claim: TaskClaim) -> bool | None:
        """The fact's answer, None while unanswered; :class:`TaskClaimLostError` once lost."""
        ...

    async def withdraw_tasks(
        self, run_id: str, *, fence: int | None, keep: Collection[tuple[str, int]] = ()
    ) -> None:
        """Delete the run's offers and their facts except the (task_id, attempt) in ``keep``."""
        ...

    async def task_exchange(self, run_id: str | None = None) -> list[TaskExchangeRow]:
        """The offers (of ``run_id`` or all), oldest first, for display and tests."""
        ...

    async def acquire_slot(self, key: str, limit: int, holder: str, ttl_s: float) -> bool:
        """Take (or renew) one of ``limit`` pool-wide slots of ``key``; False when all are held."""
        ...

    async def release_slot(self, key: str, holder: str) -> None:
        """Give ``holder``'s slot of ``key`` back."""
        ...

    async def close(self) -> None:
        """Close the store; it cannot be used afterwards. Closing twice is harmless."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
