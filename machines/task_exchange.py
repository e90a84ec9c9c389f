"""The run owner's side of the task exchange: offer attempts to the pool, take back their facts.

A run has one writer, the worker holding its lease: it alone decides and
appends, so the log keeps one order with no gap. With the exchange, the
attempts it dispatches need not run in its process: once a
``TaskDispatched`` is durable the owner *offers* the attempt in the store;
any worker of the pool (the owner's own included) claims it, runs the agent
and posts back what the agent's journal would have handed the driver (each
step fact, then the outcome). The owner takes those facts in order, decides
on them through the same decider as local ones, appends, and *answers* each
one: an executor's ``ctx.step`` returns only once its step is durable in the
run's log, exactly as in one process.

Example::

    exchange = OwnerExchange(store, run_id)
    exchange.offer(TaskOffer("price", 1, "travel", "pricing"), seq=7)
    facts = await exchange.next_facts(fence)     # [(fact id, event), ...]
    exchange.answer(fact_id, durable=True)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import msgspec

from ledgerflow.eventstore import EventStore, TaskFact, TaskOffer
from ledgerflow.machines import events as ev

__all__ = ["OwnerExchange", "fact_of"]

log = logging.getLogger("ledgerflow")

#: The facts an executor may post: a step of its journal, or the attempt's outcome.
_STEP_FACTS = (ev.StepStarted, ev.StepRecorded)
_OUTCOME_FACTS = (ev.OutputReceived, ev.AgentFailed)
#: Polling bounds while waiting for facts (seconds): quick after activity, calm when idle.
_FIRST_POLL_S = 0.002
_IDLE_POLL_S = 0.05


def fact_of(row: TaskFact) -> ev.Event | None:
    """The event a posted fact carries, or None when it is not one an executor may post.

    Another process wrote it: it must decode, be of the kind it says, and be
    about the very attempt its row names, or it is refused.
    """
    try:
        event = ev.decode_event(row.data)
    except (msgspec.DecodeError, msgspec.ValidationError, ev.EventTooNewError) as exc:
        log.warning("Refused a fact of task %s attempt %d of run %s that does not decode: %s",
                    row.task_id, row.attempt, row.run_id, exc)
        return None
    allowed = _STEP_FACTS if row.kind == "step" else _OUTCOME_FACTS
    about = (getattr(event, "task_id", None), getattr(event, "attempt", None))
    if not isinstance(event, allowed) or about != (row.task_id, row.attempt):
        log.warning("Refused a %s fact for task %s attempt %d of run %s: it carries %s about %r.",
                    row.kind, row.task_id, row.attempt, row.run_id, type(event).__name__, about)
        return None
    return event


class OwnerExchange:
    """One driven run's offers, outstanding remote attempts and answers to send."""

    def __init__(self, store: EventStore, run_id: str, *,
                 on_offer: Callable[[], None] | None = None,
                 on_answer: Callable[[], None] | None = None) -> None:
        self.store = store
        #: Tell this process's executor at once (others find out by polling).
        self.on_offer = on_offer
        self.on_answer = on_answer
        self.run_id = run_id
        #: Offers decided durable, not yet written, with the log position they refer to.
        self.to_offer: list[TaskOffer] = []
        self.offer_seq = 0
        #: Attempts offered whose outcome has not come back.
        self.outstanding: set[tuple[str, int]] = set()
        #: Answers ready to send (their decisions are durable, or they were refused).
        self.answers: dict[int, bool] = {}
        self.wake = asyncio.Event()

    @property
    def busy(self) -> bool:
        """Whether anything is left to send or to wait for."""
        return bool(self.to_offer or self.outstanding or self.answers)

    def offer(self, offer: TaskOffer, *, seq: int) -> None:
        self.to_offer.append(offer)
        self.offer_seq = max(self.offer_seq, seq)
        self.outstanding.add((offer.task_id, offer.attempt))
        self.wake.set()

    def answer(self, fact_id: int, *, durable: bool) -> None:
        self.answers[fact_id] = durable
        self.wake.set()

    def outcome_arrived(self, task_id: str, attempt: int) -> None:
        self.outstanding.discard((task_id, attempt))

    async def send(self, fence: int | None) -> None:
        """Write the pending offers and answers (fenced: a lost lease writes nothing)."""
        if self.to_offer:
            offers, self.to_offer = self.to_offer, []
            await self.store.offer_tasks(self.run_id, offers, seq=self.offer_seq, fence=fence)
            if self.on_offer is not None:
                self.on_offer()
        if self.answers:
            answers, self.answers = self.answers, {}
            await self.store.answer_task_facts(self.run_id, answers, fence=fence)
            if self.on_answer is not None:
                self.on_answer()

    async def next_facts(self, fence: int | None) -> list[tuple[TaskFact, ev.Event | None]]:
        """Send what is pending, then wait for the next facts the pool posted."""
        delay = _FIRST_POLL_S
        while True:
            await self.send(fence)
            if not self.outstanding:
                return []  # nothing offered is out: no fact can come
            rows = await self.store.task_facts(self.run_id)
            if rows:
                return [(row, fact_of(row)) for row in rows]
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), delay)
            delay = min(delay * 2, _IDLE_POLL_S)

    async def close(self, fence: int | None, *, withdraw: bool) -> None:
        """Send the last answers; ``withdraw``: take back what is still offered.

        A run that ended or waits has nothing left for the pool. A drive cut
        short (the worker stopping) leaves its offers: executors go on, and
        the next owner's re-offer of the same attempt keeps their claims.
        """
        try:
            await self.send(fence)
            if withdraw:
                await self.store.withdraw_tasks(self.run_id, fence=fence)
        except Exception as exc:  # a lost lease: the next owner re-offers or withdraws
            log.warning("Could not withdraw the offers of run %s: %s", self.run_id, exc)
        self.outstanding.clear()
