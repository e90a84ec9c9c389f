"""The task exchange's public methods, once for both backends (a base of ``StoreCore``).

Each method checks its arguments (:mod:`ledgerflow.eventstore.tasks`), refuses
writes on read-only and old-schema stores like every other write, and calls
the backend's ``_x`` round trip (:mod:`ledgerflow.eventstore.sqlite_tasks`,
:mod:`ledgerflow.eventstore.postgres_tasks`).

Example::

    await store.offer_tasks("r1", [TaskOffer("price", 1, "travel", "pricing")], seq=7, fence=3)
    claim = await store.claim_task("w2", 30, workflows=["travel"],
                                   limits={("travel", "pricing"): AgentLimit(max_concurrent=2)})
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Collection, Mapping, Sequence

from .appending import is_count
from .errors import InvalidQueryError
from .mixin_needs import StoreGuards
from .pool import check_names, check_worker_id
from .rules import lease_ttl
from .tasks import (
    AgentLimit,
    TaskClaim,
    TaskExchangeRow,
    TaskFact,
    TaskOffer,
    check_answers,
    check_claim,
    check_fact,
    check_keep,
    check_limits,
    check_name,
    check_offers,
    check_slot,
)

__all__ = ["TASKS_SCHEMA_VERSION", "TaskExchangeCore"]

TASKS_SCHEMA_VERSION = 3
"""The first schema with the task exchange's tables (older stores read none)."""


def _check_fence(operation: str, fence: object) -> int | None:
    if fence is not None and not is_count(fence):
        raise InvalidQueryError(operation, f"fence must be an int or None, not {fence!r}")
    return fence


class TaskExchangeCore(StoreGuards):
    """Offer, claim, post, take, answer: the task exchange of a store (see :class:`EventStore`)."""

    max_event_bytes: int
    # --- what StoreCore supplies ---

    @abstractmethod
    async def _wake_best_effort(self) -> None: ...

    # --- what a backend supplies ---

    @abstractmethod
    async def _offer_tasks(
        self, run_id: str, offers: list[TaskOffer], seq: int, fence: int | None
    ) -> None: ...

    @abstractmethod
    async def _claim_task(
        self,
        owner: str,
        ttl_s: float,
        labels: list[str],
        limits: dict[tuple[str, str], AgentLimit],
    ) -> TaskClaim | None: ...

    @abstractmethod
    async def _renew_task_claim(self, claim: TaskClaim, ttl_s: float) -> None: ...

    @abstractmethod
    async def _post_task_fact(self, claim: TaskClaim, kind: str, data: bytes) -> int: ...

    @abstractmethod
    async def _task_facts(self, run_id: str) -> list[TaskFact]: ...

    @abstractmethod
    async def _answer_task_facts(
        self, run_id: str, answers: dict[int, bool], fence: int | None
    ) -> None: ...

    @abstractmethod
    async def _task_fact_answer(self, fact_id: int, claim: TaskClaim) -> bool | None: ...

    @abstractmethod
    async def _withdraw_tasks(
        self, run_id: str, fence: int | None, keep: set[tuple[str, int]]
    ) -> None: ...

    @abstractmethod
    async def _task_exchange(self, run_id: str | None) -> list[TaskExchangeRow]: ...

    @abstractmethod
    async def _acquire_slot(self, key: str, limit: int, holder: str, ttl_s: float) -> bool: ...

    @abstractmethod
    async def _release_slot(self, key: str, holder: str) -> None: ...

    # --- the owner's side ---

    async def offer_tasks(
        self, run_id: str, offers: Sequence[TaskOffer], *, seq: int, fence: int | None
    ) -> None:
        """Offer task attempts to the pool (upsert per (run, task, attempt)), then wake it.

        A new offer is unclaimed; an existing one keeps its claim and facts,
        only its ``seq`` moves. With ``fence``, commits only while the run's
        live lease carries it (:class:`LeaseLostError`, nothing written).

        Example::

            await store.offer_tasks("r1", [TaskOffer("price", 1, "travel", "pricing")],
                                    seq=7, fence=3)
        """
        self._must_be_writable(operation := f"offer tasks of run {run_id!r}")
        run, checked, number = check_offers(run_id, offers, seq)
        fenced = _check_fence(operation, fence)
        if not checked:
            return
        await self._offer_tasks(run, checked, number, fenced)
        await self._wake_best_effort()

    async def task_facts(self, run_id: str) -> list[TaskFact]:
        """The run's unanswered facts of current claims, in the order they were posted.

        Facts of a superseded claim are not returned (their executor's poll
        raises :class:`TaskClaimLostError`). A store older than schema 3 has none.

        Example::

            for fact in await store.task_facts("r1"):
                ...  # decide, append, then answer_task_facts
        """
        self._must_be_open()
        run = check_name(f"read the task facts of run {run_id!r}", "the run id", run_id)
        if self.schema_version < TASKS_SCHEMA_VERSION:
            return []
        return await self._task_facts(run)

    async def answer_task_facts(
        self, run_id: str, answers: Mapping[int, bool], *, fence: int | None
    ) -> None:
        """Answer facts: True = its decision is durable in the log, False = refused.

        Answering an ``outcome`` fact (either way) ends its attempt: the offer
        and the attempt's step facts are deleted; the outcome itself stays a
        few minutes as the executor's receipt. Fenced like :meth:`offer_tasks`.

        Example::

            await store.answer_task_facts("r1", {12: True, 13: False}, fence=3)
        """
        self._must_be_writable(operation := f"answer task facts of run {run_id!r}")
        run, checked = check_answers(run_id, answers)
        fenced = _check_fence(operation, fence)
        if checked:
            await self._answer_task_facts(run, checked, fenced)

    async def withdraw_tasks(
        self, run_id: str, *, fence: int | None, keep: Collection[tuple[str, int]] = ()
    ) -> None:
        """Delete the run's offers and their facts, except the (task_id, attempt) in ``keep``.

        Example::

            await store.withdraw_tasks("r1", fence=3, keep={("book", 2)})
        """
        self._must_be_writable(operation := f"withdraw tasks of run {run_id!r}")
        run, kept = check_keep(run_id, keep)
        await self._withdraw_tasks(run, _check_fence(operation, fence), kept)

    # --- the executor's side ---

    async def claim_task(
        self,
        owner: str,
        ttl_s: float,
        *,
        workflows: Sequence[str],
        limits: Mapping[tuple[str, str], AgentLimit] | None = None,
    ) -> TaskClaim | None:
        """Claim the oldest free offer of ``workflows`` whose agent is within its limit.

        Free: unclaimed, or its claim expired (database clock). ``limits``
        per (workflow, agent): fewer than ``max_concurrent`` live claims, and
        fewer than ``per_minute`` claims in the last 60 s, across the pool.
        The claim's token is one more than the offer's last. None: nothing free.

        Example::

            claim = await store.claim_task(
                "w2", 30, workflows=["travel"],
                limits={("travel", "pricing"): AgentLimit(max_concurrent=2)})
        """
        operation = f"claim a task for {owner!r}"
        self._must_be_writable(operation)
        check_worker_id(operation, owner)
        ttl = lease_ttl("", ttl_s, operation)
        labels = check_names(operation, "workflows", workflows)
        return await self._claim_task(owner, ttl, labels, check_limits(operation, limits))

    async def renew_task_claim(self, claim: TaskClaim, ttl_s: float) -> None:
        """Keep the claim ``ttl_s`` more seconds; :class:`TaskClaimLostError` if superseded.

        Example::

            await store.renew_task_claim(claim, 30)
        """
        self._must_be_writable(operation := "renew a task claim")
        checked = check_claim(operation, claim)
        await self._renew_task_claim(checked, lease_ttl("", ttl_s, operation))

    async def post_task_fact(self, claim: TaskClaim, kind: str, data: bytes) -> int:
        """Post a ``"step"`` or ``"outcome"`` fact under a current claim; its id.

        Raises :class:`TaskClaimLostError` (nothing written) once the claim is
        superseded or its offer withdrawn, :class:`EventTooLargeError` when
        ``data`` is over ``max_event_bytes``.

        Example::

            fact_id = await store.post_task_fact(claim, "step", b'{"type": "StepFinished"}')
        """
        self._must_be_writable("post a task fact")
        checked = check_fact(claim, kind, data, self.max_event_bytes)
        return await self._post_task_fact(checked, kind, data)

    async def task_fact_answer(self, fact_id: int, claim: TaskClaim) -> bool | None:
        """The owner's answer to a fact: True (durable), False (refused), None (not yet).

        Raises :class:`TaskClaimLostError` when the fact is unanswered and
        the claim is no longer current.

        Example::

            while (answer := await store.task_fact_answer(fact_id, claim)) is None:
                await asyncio.sleep(0.05)
        """
        self._must_be_open()
        operation = "poll a task fact's answer"
        checked = check_claim(operation, claim)
        if not is_count(fact_id) or fact_id < 1:
            raise InvalidQueryError(operation, f"the fact id must be an int >= 1, not {fact_id!r}")
        if self.schema_version < TASKS_SCHEMA_VERSION:
            raise InvalidQueryError(operation, "the store has no task exchange before schema 3")
        return await self._task_fact_answer(fact_id, checked)

    # --- display, slots ---

    async def task_exchange(self, run_id: str | None = None) -> list[TaskExchangeRow]:
        """The offers (of ``run_id``, or every run), oldest offer first.

        Example::

            [(r.task_id, r.claimed_by, r.token) for r in await store.task_exchange("r1")]
        """
        self._must_be_open()
        if run_id is not None:
            check_name("list the task exchange", "the run id", run_id)
        if self.schema_version < TASKS_SCHEMA_VERSION:
            return []
        return await self._task_exchange(run_id)

    async def acquire_slot(self, key: str, limit: int, holder: str, ttl_s: float) -> bool:
        """Take one of ``limit`` pool-wide slots of ``key`` for ``ttl_s``; False when all are held.

        Expired slots count as free; the same holder acquiring again renews.

        Example::

            if await store.acquire_slot("model:gpt-4.1-mini", 8, "w1:task7", 60):
                try: ...
                finally: await store.release_slot("model:gpt-4.1-mini", "w1:task7")
        """
        operation = f"acquire slot {key!r}"
        self._must_be_writable(operation)
        name, count = check_slot(key, limit)
        check_name(operation, "the holder", holder)
        return await self._acquire_slot(name, count, holder, lease_ttl("", ttl_s, operation))

    async def release_slot(self, key: str, holder: str) -> None:
        """Give ``holder``'s slot of ``key`` back (nothing if it holds none)."""
        operation = f"release slot {key!r}"
        self._must_be_writable(operation)
        check_name(operation, "the key", key)
        check_name(operation, "the holder", holder)
        await self._release_slot(key, holder)
