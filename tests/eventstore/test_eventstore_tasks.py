"""The task exchange, on both backends: offers, claims (with limits), facts, answers, slots.

Several store objects on one database stand for several workers: they share
nothing but the database, as worker processes do.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from eventstore_helpers import StoreFactory, ev

from ledgerflow.eventstore import (
    AgentLimit,
    EventStore,
    EventTooLargeError,
    InvalidQueryError,
    LeaseLostError,
    StoreReadOnlyError,
    TaskClaim,
    TaskClaimLostError,
    TaskOffer,
)


def offers(*task_ids: str, agent: str = "pricing", label: str = "travel") -> list[TaskOffer]:
    return [TaskOffer(task_id, 1, label, agent) for task_id in task_ids]


async def owned_run(store: EventStore, run_id: str = "r1") -> int:
    """A run with one event whose lease the owner holds; its fence."""
    await store.append(run_id, [ev("RunStarted")], 0, status="running", label="travel")
    fence = await store.take_lease(run_id, "owner", 30)
    assert fence is not None
    return fence


async def claim(store: EventStore, owner: str, ttl_s: float = 30, **kw: object) -> TaskClaim:
    got = await store.claim_task(owner, ttl_s, workflows=["travel"], **kw)  # type: ignore[arg-type]
    assert got is not None
    return got


async def test_an_offer_is_claimed_by_exactly_one_worker(store_factory: StoreFactory) -> None:
    owner = await store_factory()
    fence = await owned_run(owner)
    tasks = [f"t{i}" for i in range(12)]
    await owner.offer_tasks("r1", offers(*tasks), seq=1, fence=fence)
    workers = [owner, await store_factory(), await store_factory()]

    async def claimer(n: int) -> list[TaskClaim]:
        store, got = workers[n % len(workers)], []
        while (c := await store.claim_task(f"w{n}", 30, workflows=["travel"])) is not None:
            got.append(c)
        return got

    claims = [c for batch in await asyncio.gather(*map(claimer, range(20))) for c in batch]
    assert sorted(c.task_id for c in claims) == sorted(tasks)
    assert {c.token for c in claims} == {1}
    assert all(c.seq == 1 and c.run_id == "r1" and c.agent == "pricing" for c in claims)
    rows = await owner.task_exchange("r1")
    assert {r.task_id: r.claimed_by for r in rows} == {c.task_id: c.owner for c in claims}


async def test_claims_go_oldest_offer_first_and_only_for_the_asked_workflows(
    store: EventStore,
) -> None:
    fence = await owned_run(store)
    await store.offer_tasks("r1", offers("a", "b"), seq=1, fence=fence)
    await store.offer_tasks("r1", offers("x", label="other"), seq=2, fence=fence)
    await store.offer_tasks("r1", offers("c"), seq=3, fence=fence)
    assert [(await claim(store, "w")).task_id for _ in range(3)] == ["a", "b", "c"]
    assert await store.claim_task("w", 30, workflows=["travel"]) is None
    assert (await store.claim_task("w", 30, workflows=["travel", "other"])) is not None


async def test_a_lapsed_claim_is_reclaimed_with_a_higher_token(
    store_factory: StoreFactory,
) -> None:
    owner = await store_factory()
    fence = await owned_run(owner)
    await owner.offer_tasks("r1", offers("price"), seq=1, fence=fence)
    first = await claim(owner, "w1", ttl_s=0.3)
    other = await store_factory()
    assert await other.claim_task("w2", 30, workflows=["travel"]) is None  # still live
    await asyncio.sleep(0.4)
    assert [r.claimed_by for r in await owner.task_exchange()] == [None]  # expired
    second = await claim(other, "w2")
    assert (first.token, second.token) == (1, 2)
    assert [(r.claimed_by, r.token) for r in await owner.task_exchange("r1")] == [("w2", 2)]
    with pytest.raises(TaskClaimLostError) as info:
        await owner.renew_task_claim(first, 30)
    assert (info.value.task_id, info.value.token) == ("price", 1)
    await other.renew_task_claim(second, 30)


async def test_a_superseded_claim_cannot_post_facts(store: EventStore) -> None:
    fence = await owned_run(store)
    await store.offer_tasks("r1", offers("price"), seq=1, fence=fence)
    first = await claim(store, "w1", ttl_s=0.3)
    early = await store.post_task_fact(first, "step", b'{"n": 1}')
    await asyncio.sleep(0.4)
    second = await claim(store, "w2")
    with pytest.raises(TaskClaimLostError):
        await store.post_task_fact(first, "outcome", b'{"late": true}')
    with pytest.raises(TaskClaimLostError):  # its unanswered fact: the executor learns it lost
        await store.task_fact_answer(early, first)
    assert await store.task_facts("r1") == []  # the superseded claim's fact is not the owner's
    fact = await store.post_task_fact(second, "step", b'{"n": 2}')
    assert [(f.id, f.token, f.data) for f in await store.task_facts("r1")] == [
        (fact, 2, b'{"n": 2}')]


async def test_facts_come_back_in_order_and_answers_reach_the_executor(
    store_factory: StoreFactory,
) -> None:
    owner = await store_factory()
    fence = await owned_run(owner)
    await owner.offer_tasks("r1", offers("price", "book"), seq=4, fence=fence)
    executor = await store_factory()
    price, book = await claim(executor, "w1"), await claim(executor, "w1")
    ids = [
        await executor.post_task_fact(price, "step", b'{"step": 0}'),
        await executor.post_task_fact(book, "step", b'{"step": "b0"}'),
        await executor.post_task_fact(price, "step", b'{"step": 1}'),
    ]
    assert ids == sorted(ids)
    facts = await owner.task_facts("r1")
    assert [(f.id, f.task_id, f.attempt, f.kind, f.data) for f in facts] == [
        (ids[0], "price", 1, "step", b'{"step": 0}'),
        (ids[1], "book", 1, "step", b'{"step": "b0"}'),
        (ids[2], "price", 1, "step", b'{"step": 1}'),
    ]
    polled = [price, book, price]
    answers = [await executor.task_fact_answer(i, c) for i, c in zip(ids, polled, strict=True)]
    assert answers == [None, None, None]
    await owner.answer_task_facts("r1", {ids[0]: True, ids[1]: False}, fence=fence)
    assert await executor.task_fact_answer(ids[0], price) is True
    assert await executor.task_fact_answer(ids[1], book) is False
    assert await executor.task_fact_answer(ids[2], price) is None
    assert [f.id for f in await owner.task_facts("r1")] == [ids[2]]
    with pytest.raises(InvalidQueryError):  # a fact of another claim
        await executor.task_fact_answer(ids[1], price)


async def test_answering_the_outcome_removes_the_offer(store: EventStore) -> None:
    fence = await owned_run(store)
    await store.offer_tasks("r1", offers("price", "book"), seq=1, fence=fence)
    price = await claim(store, "w1")
    step = await store.post_task_fact(price, "step", b"{}")
    outcome = await store.post_task_fact(price, "outcome", b'{"type": "OutputReceived"}')
    await store.answer_task_facts("r1", {step: True, outcome: True}, fence=fence)
    assert [r.task_id for r in await store.task_exchange("r1")] == ["book"]
    assert await store.task_facts("r1") == []
    assert await store.task_fact_answer(outcome, price) is True  # the executor's receipt
    with pytest.raises(TaskClaimLostError):
        await store.post_task_fact(price, "step", b"{}")
    with pytest.raises(TaskClaimLostError):
        await store.renew_task_claim(price, 30)
    book = await claim(store, "w1")
    refused = await store.post_task_fact(book, "outcome", b"{}")
    await store.answer_task_facts("r1", {refused: False}, fence=fence)
    assert await store.task_exchange("r1") == []
    assert await store.task_fact_answer(refused, book) is False


async def test_offers_need_the_live_fence(store_factory: StoreFactory) -> None:
    store = await store_factory()
    stale = await owned_run(store)
    await store.offer_tasks("r1", offers("price"), seq=1, fence=stale)
    c = await claim(store, "w1")
    fact = await store.post_task_fact(c, "outcome", b"{}")
    await store.release_lease("r1", "owner")
    fresh = await store.take_lease("r1", "owner-2", 30)
    assert fresh == stale + 1
    for write in (
        store.offer_tasks("r1", offers("book"), seq=2, fence=stale),
        store.answer_task_facts("r1", {fact: True}, fence=stale),
        store.withdraw_tasks("r1", fence=stale),
    ):
        with pytest.raises(LeaseLostError):
            await write
    assert [r.task_id for r in await store.task_exchange("r1")] == ["price"]
    assert [f.id for f in await store.task_facts("r1")] == [fact]
    await store.offer_tasks("r1", offers("book"), seq=2, fence=fresh)
    await store.answer_task_facts("r1", {fact: True}, fence=fresh)
    assert [r.task_id for r in await store.task_exchange("r1")] == ["book"]


async def test_per_agent_limit_holds_across_concurrent_claimers(
    store_factory: StoreFactory,
) -> None:
    owner = await store_factory()
    fence = await owned_run(owner)
    await owner.offer_tasks(
        "r1", offers(*[f"p{i}" for i in range(10)]) + offers("free", agent="other"),
        seq=1, fence=fence)
    workers = [owner, await store_factory(), await store_factory()]
    limits = {("travel", "pricing"): AgentLimit(max_concurrent=2)}
    live: set[str] = set()
    most = 0
    done: Counter[str] = Counter()

    async def claimer(n: int) -> None:
        nonlocal most
        store = workers[n % len(workers)]
        idle = 0
        while idle < 20:
            c = await store.claim_task(f"w{n}", 30, workflows=["travel"], limits=limits)
            if c is None:
                idle += 1
                await asyncio.sleep(0.01)
                continue
            idle = 0
            if c.agent == "pricing":
                live.add(c.task_id)
                most = max(most, len(live))
                # What the store counts must agree with what we hold.
                rows = await store.task_exchange("r1")
                assert sum(r.agent == "pricing" and r.claimed_by is not None for r in rows) <= 2
            await asyncio.sleep(0.02)
            fact = await store.post_task_fact(c, "outcome", b"{}")
            live.discard(c.task_id)  # before the answer: the claim ends with it
            await store.answer_task_facts("r1", {fact: True}, fence=fence)
            done[c.task_id] += 1

    await asyncio.gather(*map(claimer, range(6)))
    assert most == 2
    assert sorted(done) == sorted([f"p{i}" for i in range(10)] + ["free"])
    assert set(done.values()) == {1}


async def test_per_minute_rate_leaves_offers_waiting(store_factory: StoreFactory) -> None:
    store = await store_factory()
    fence = await owned_run(store)
    await store.offer_tasks("r1", offers("a", "b", "c", "d"), seq=1, fence=fence)
    await store.offer_tasks("r1", offers("z", agent="other"), seq=1, fence=fence)
    limits = {("travel", "pricing"): AgentLimit(per_minute=2)}
    other = await store_factory()
    first = await claim(store, "w1", limits=limits)
    await claim(other, "w2")  # a claimer without limits still counts as a start
    third = await claim(store, "w1", limits=limits)
    assert (first.task_id, third.task_id) == ("a", "z")  # pricing is at its rate: z goes first
    assert await store.claim_task("w1", 30, workflows=["travel"], limits=limits) is None
    waiting = [r.task_id for r in await store.task_exchange("r1") if r.claimed_by is None]
    assert waiting == ["c", "d"]
    # Finished claims do not give the rate back: it counts claims made, not live ones.
    fact = await store.post_task_fact(first, "outcome", b"{}")
    await store.answer_task_facts("r1", {fact: True}, fence=fence)
    assert await store.claim_task("w1", 30, workflows=["travel"], limits=limits) is None
    unlimited = await claim(store, "w1", limits={("travel", "pricing"): AgentLimit()})
    assert unlimited.task_id == "c"


async def test_slots_count_across_holders(store_factory: StoreFactory) -> None:
    a, b = await store_factory(), await store_factory()
    assert await a.acquire_slot("model:m", 2, "h1", 30)
    assert await b.acquire_slot("model:m", 2, "h2", 0.3)
    assert not await a.acquire_slot("model:m", 2, "h3", 30)
    assert await a.acquire_slot("model:other", 2, "h3", 30)  # keys count apart
    assert await b.acquire_slot("model:m", 2, "h1", 30)  # the holder renews
    await asyncio.sleep(0.4)  # h2's slot lapses
    assert await b.acquire_slot("model:m", 2, "h3", 30)
    assert not await a.acquire_slot("model:m", 2, "h4", 30)
    await a.release_slot("model:m", "h1")
    await a.release_slot("model:m", "nobody")
    assert await b.acquire_slot("model:m", 2, "h4", 30)

    results = await asyncio.gather(
        *[(a if i % 2 else b).acquire_slot("burst", 3, f"x{i}", 30) for i in range(12)])
    assert sum(results) == 3


async def test_reoffering_keeps_a_live_claim(store: EventStore) -> None:
    fence = await owned_run(store)
    await store.offer_tasks("r1", offers("price"), seq=1, fence=fence)
    c = await claim(store, "w1")
    fact = await store.post_task_fact(c, "step", b"{}")
    await store.offer_tasks("r1", offers("price", "book"), seq=9, fence=fence)
    rows = await store.task_exchange("r1")
    assert [(r.task_id, r.claimed_by, r.token, r.seq) for r in rows] == [
        ("price", "w1", 1, 9), ("book", None, 0, 9)]
    assert [f.id for f in await store.task_facts("r1")] == [fact]
    await store.renew_task_claim(c, 30)
    await store.offer_tasks("r1", [], seq=10, fence=fence + 5)  # empty: nothing to check


async def test_withdraw_keeps_the_named_attempts(store: EventStore) -> None:
    fence = await owned_run(store)
    await store.offer_tasks(
        "r1", [*offers("a", "b"), TaskOffer("a", 2, "travel", "pricing")], seq=1, fence=fence)
    c = await claim(store, "w1")
    fact = await store.post_task_fact(c, "step", b"{}")
    await store.withdraw_tasks("r1", fence=fence, keep={("a", 2)})
    assert [(r.task_id, r.attempt) for r in await store.task_exchange()] == [("a", 2)]
    assert await store.task_facts("r1") == []
    with pytest.raises(TaskClaimLostError):
        await store.task_fact_answer(fact, c)
    with pytest.raises(TaskClaimLostError):
        await store.post_task_fact(c, "outcome", b"{}")
    await store.withdraw_tasks("r1", fence=None)
    assert await store.task_exchange() == []


async def test_task_exchange_arguments_are_checked(store_factory: StoreFactory) -> None:
    store = await store_factory()
    fence = await owned_run(store)
    with pytest.raises(InvalidQueryError, match="offered twice"):
        await store.offer_tasks("r1", offers("a", "a"), seq=1, fence=fence)
    with pytest.raises(InvalidQueryError, match="attempt"):
        await store.offer_tasks("r1", [TaskOffer("a", 0, "travel", "p")], seq=1, fence=fence)
    with pytest.raises(InvalidQueryError, match="run id"):
        await store.offer_tasks("", offers("a"), seq=1, fence=fence)
    with pytest.raises(InvalidQueryError, match="workflows"):
        await store.claim_task("w1", 30, workflows="travel")
    with pytest.raises(InvalidQueryError, match="max_concurrent"):
        await store.claim_task("w1", 30, workflows=["travel"],
                               limits={("travel", "p"): AgentLimit(max_concurrent=0)})
    with pytest.raises(InvalidQueryError, match="ttl_s"):
        await store.claim_task("w1", 0, workflows=["travel"])
    await store.offer_tasks("r1", offers("a"), seq=1, fence=fence)
    c = await claim(store, "w1")
    with pytest.raises(InvalidQueryError, match="kind"):
        await store.post_task_fact(c, "nope", b"{}")
    with pytest.raises(EventTooLargeError):
        await store.post_task_fact(c, "step", b"x" * (store.max_event_bytes + 1))
    with pytest.raises(InvalidQueryError, match="answer"):
        await store.answer_task_facts("r1", {1: 1}, fence=fence)  # type: ignore[dict-item]
    with pytest.raises(InvalidQueryError, match="limit"):
        await store.acquire_slot("k", 0, "h", 30)
    reader = await store_factory(read_only=True)
    assert [r.task_id for r in await reader.task_exchange("r1")] == ["a"]
    with pytest.raises(StoreReadOnlyError):
        await reader.claim_task("w2", 30, workflows=["travel"])
    with pytest.raises(StoreReadOnlyError):
        await reader.acquire_slot("k", 1, "h", 30)
