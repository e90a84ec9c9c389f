"""The store side of the worker pool, on every backend: fences, claims, workers, wake-ups.

Each test runs on SQLite and, with ``LEDGERFLOW_TEST_PG_DSN`` set, on PostgreSQL.
Leases that must lapse use ttls of a fraction of a second; no test asserts
on wall-clock times, only on what the store answers.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from typing import Any

import pytest
from eventstore_helpers import StoreFactory, ev, raw_sql, store_url

from ledgerflow.eventstore import (
    Claim,
    EventStore,
    InvalidQueryError,
    LeaseLostError,
    PostgresEventStore,
    StoreReadOnlyError,
)


async def _queue(store: EventStore, run_id: str, label: str = "travel") -> None:
    await store.append(run_id, [ev("RunSubmitted")], 0, status="queued", label=label)


# --- fenced leases ---


async def test_fence_grows_only_when_the_lease_passes_to_another_owner(store: EventStore) -> None:
    assert await store.take_lease("r1", "a", 0.2) == 1  # first created
    assert await store.take_lease("r1", "a", 0.2) == 1  # renewed by its owner
    assert await store.take_lease("r1", "b", 30) is None  # a live lease is not taken
    await asyncio.sleep(0.3)
    assert await store.take_lease("r1", "a", 0.2) == 1  # lapsed, untaken, renewed: kept
    await asyncio.sleep(0.3)
    assert await store.take_lease("r1", "b", 30) == 2  # passed to another owner
    assert await store.try_lease("r1", "a", 30) is False
    assert await store.lease_of("r1") is not None


async def test_fenced_append_after_a_takeover_is_refused_and_appends_nothing(
    store: EventStore,
) -> None:
    fence_a = await store.take_lease("r1", "worker-a", 0.2)
    assert fence_a is not None
    await store.append("r1", [ev()], 0, fence=fence_a)
    await asyncio.sleep(0.3)  # worker-a stalls past its ttl; worker-b takes over
    assert await store.take_lease("r1", "worker-b", 30) == fence_a + 1
    with pytest.raises(LeaseLostError) as info:
        await store.append("r1", [ev("Late")], 1, fence=fence_a)
    assert (info.value.run_id, info.value.fence, info.value.holder) == ("r1", 1, "worker-b")
    assert "taken over (fence 1 < 2, now held by worker-b)" in str(info.value)
    assert "must stop driving it" in str(info.value)
    assert [e.type for e in await store.read_all("r1")] == ["Ticked"]
    summary = await store.run("r1")
    assert summary is not None
    assert summary.last_seq == 1


async def test_fenced_append_on_a_lapsed_or_missing_lease_is_refused(store: EventStore) -> None:
    fence = await store.take_lease("r1", "a", 0.2)
    assert fence is not None
    await asyncio.sleep(0.3)
    with pytest.raises(LeaseLostError) as lapsed:
        await store.append("r1", [ev()], 0, fence=fence)
    assert lapsed.value.holder is None
    assert "expired" in str(lapsed.value)
    with pytest.raises(LeaseLostError) as missing:
        await store.append("r2", [ev()], 0, fence=1)
    assert missing.value.holder is None
    assert await store.last_seq("r1") == 0
    assert await store.last_seq("r2") == 0


async def test_fenced_append_by_the_live_holder_commits(store: EventStore) -> None:
    fence = await store.take_lease("r1", "a", 30)
    assert fence is not None
    envs = await store.append("r1", [ev(), ev()], 0, fence=fence, status="running")
    assert [e.seq for e in envs] == [1, 2]
    with pytest.raises(LeaseLostError):
        await store.append("r1", [ev()], 2, fence=fence + 1)  # a fence it never had


# --- claims ---


async def test_claim_takes_the_oldest_free_run_in_the_asked_statuses(store: EventStore) -> None:
    await _queue(store, "old")
    await _queue(store, "mid", label="other")
    await _queue(store, "new")
    await store.append("done", [ev()], 0, status="completed", label="travel")
    assert await store.take_lease("old", "someone", 30) == 1  # leased: not free
    first = await store.claim_run("w1", 30, statuses=["queued"])
    assert first == Claim("mid", 1, "queued", "other")
    second = await store.claim_run("w1", 30, statuses=["queued"], workflows=["travel"])
    assert second == Claim("new", 1, "queued", "travel")
    assert await store.claim_run("w1", 30, statuses=["queued"]) is None
    lease = await store.lease_of("new")
    assert lease is not None
    assert lease[0] == "w1"


async def test_claim_takes_over_a_lapsed_lease_with_the_next_fence(store: EventStore) -> None:
    await store.append("r1", [ev()], 0, status="running", label="travel")
    assert await store.take_lease("r1", "crashed", 0.2) == 1
    assert await store.claim_run("w1", 30, statuses=["running"]) is None
    await asyncio.sleep(0.3)
    assert await store.claim_run("w1", 30, statuses=["running"]) == Claim(
        "r1", 2, "running", "travel")


async def test_claim_arguments_are_checked(store: EventStore) -> None:
    with pytest.raises(InvalidQueryError, match="statuses must be a list of str"):
        await store.claim_run("w1", 30, statuses="queued")
    with pytest.raises(InvalidQueryError, match="statuses must be a non-empty list"):
        await store.claim_run("w1", 30, statuses=[])
    with pytest.raises(InvalidQueryError, match="ttl_s"):
        await store.claim_run("w1", 0, statuses=["queued"])
    with pytest.raises(InvalidQueryError, match="worker id"):
        await store.claim_run("", 30, statuses=["queued"])


async def test_two_stores_claiming_at_once_never_share_a_run(store_factory: StoreFactory) -> None:
    first = await store_factory("shared")
    second = await store_factory("shared")
    for i in range(30):
        await _queue(first, f"r{i:02}")

    async def claim_all(store: EventStore, owner: str) -> list[str]:
        got = []
        for _ in range(40):
            claim = await store.claim_run(owner, 600, statuses=["queued"])
            if claim is not None:
                got.append(claim.run_id)
        return got

    results = await asyncio.gather(
        *(claim_all(s, f"w{i}") for i, s in enumerate([first, second, first, second]))
    )
    claimed = [run_id for got in results for run_id in got]
    assert len(claimed) == len(set(claimed))  # nobody got a run twice
    assert sorted(claimed) == [f"r{i:02}" for i in range(30)]


async def test_three_processes_claiming_never_share_a_run(store: EventStore) -> None:
    import _claim_worker  # noqa: PLC0415 - spawned children import it by this name

    for i in range(45):
        await _queue(store, f"r{i:02}")
    ctx = multiprocessing.get_context("spawn")
    out: Any = ctx.Queue()
    procs = [
        ctx.Process(target=_claim_worker.claim_all, args=(store_url(store), f"p{i}", out))
        for i in range(3)
    ]
    for p in procs:
        p.start()
    results = [await asyncio.to_thread(out.get, timeout=120) for _ in procs]
    for p in procs:
        await asyncio.to_thread(p.join, 60)
        assert p.exitcode == 0
    assert not [r for r in results if isinstance(r, str)], results
    claimed = [run_id for got in results for run_id in got]
    assert len(claimed) == len(set(claimed))
    assert sorted(claimed) == [f"r{i:02}" for i in range(45)]


# --- the runs listing names the owner ---


async def test_runs_name_the_live_lease_holder(store: EventStore) -> None:
    await _queue(store, "r1")
    await _queue(store, "r2")
    await store.take_lease("r1", "w1", 30)
    await store.take_lease("r2", "w2", 0.2)
    await asyncio.sleep(0.3)
    owners = {r.run_id: r.owner for r in await store.runs()}
    assert owners == {"r1": "w1", "r2": None}
    one = await store.run("r1")
    assert one is not None
    assert (one.status, one.label, one.owner) == ("queued", "travel", "w1")
    assert [r.owner for r in await store.runs(status="queued", limit=1)] in (["w1"], [None])


# --- workers registry ---


async def test_workers_are_listed_with_their_info_and_the_runs_they_hold(
    store: EventStore,
) -> None:
    await _queue(store, "r1")
    await store.register_worker("w1", {"host": "h1", "pid": 7, "concurrency": 2}, 30)
    await store.register_worker("w2", {"host": "h2"}, 30)
    claim = await store.claim_run("w1", 30, statuses=["queued"])
    assert claim is not None
    listed = {w.worker_id: w for w in await store.workers()}
    assert set(listed) == {"w1", "w2"}
    w1 = listed["w1"]
    assert w1.info == {"host": "h1", "pid": 7, "concurrency": 2}
    assert w1.alive
    assert w1.runs == ("r1",)
    assert w1.started_at <= w1.heartbeat_at < w1.expires_at
    assert listed["w2"].runs == ()
    await store.unregister_worker("w2")
    assert [w.worker_id for w in await store.workers()] == ["w1"]


async def test_a_silent_worker_is_gone_then_dropped_from_the_list(store: EventStore) -> None:
    await store.register_worker("w1", {}, 0.2)
    await asyncio.sleep(0.3)
    (gone,) = await store.workers()
    assert not gone.alive
    assert await store.workers(include_gone_s=0) == []
    await store.worker_heartbeat("w1", 30)
    (back,) = await store.workers(include_gone_s=0)
    assert back.alive


async def test_heartbeat_re_registers_a_worker_whose_row_vanished(store: EventStore) -> None:
    await store.register_worker("w1", {"host": "h1"}, 30)
    await raw_sql(store, "DELETE FROM workers")
    await store.worker_heartbeat("w1", 30)
    (again,) = await store.workers()
    assert (again.worker_id, again.info, again.alive) == ("w1", {"host": "h1"}, True)


async def test_worker_info_must_be_a_json_dict(store: EventStore) -> None:
    with pytest.raises(InvalidQueryError, match="info must be a dict"):
        await store.register_worker("w1", ["x"], 30)  # type: ignore[arg-type]
    with pytest.raises(InvalidQueryError, match="JSON-encodable"):
        await store.register_worker("w1", {"x": object()}, 30)
    assert await store.workers() == []


async def test_a_read_only_store_lists_workers_but_registers_none(
    store_factory: StoreFactory,
) -> None:
    writer = await store_factory("ro")
    await writer.register_worker("w1", {}, 30)
    reader = await store_factory("ro", read_only=True)
    assert [w.worker_id for w in await reader.workers()] == ["w1"]
    with pytest.raises(StoreReadOnlyError):
        await reader.register_worker("w2", {}, 30)
    with pytest.raises(StoreReadOnlyError):
        await reader.claim_run("w2", 30, statuses=["queued"])


# --- wake-ups ---


async def test_wait_for_work_times_out_when_nobody_notifies(store: EventStore) -> None:
    assert await store.wait_for_work(0.05) is False
    with pytest.raises(InvalidQueryError, match="timeout_s"):
        await store.wait_for_work(-1)


async def test_another_connection_notifying_wakes_a_waiting_postgres_worker(
    store_factory: StoreFactory,
) -> None:
    waiter = await store_factory("wake")
    if not isinstance(waiter, PostgresEventStore):
        pytest.skip("SQLite cannot wake another connection; its wait polls")
    notifier = await store_factory("wake")
    assert await waiter.wait_for_work(0.01) is False  # now listening
    waiting = asyncio.create_task(waiter.wait_for_work(30))
    await asyncio.sleep(0.05)
    await notifier.notify_work()
    assert await waiting is True


async def test_a_submit_and_a_release_wake_the_postgres_pool(store_factory: StoreFactory) -> None:
    waiter = await store_factory("wake")
    if not isinstance(waiter, PostgresEventStore):
        pytest.skip("SQLite cannot wake another connection; its wait polls")
    other = await store_factory("wake")
    assert await waiter.wait_for_work(0.01) is False
    await other.append("r1", [ev()], 0, status="queued")  # a submit
    assert await waiter.wait_for_work(30) is True
    await other.take_lease("r1", "w1", 30)
    await other.append("r1", [ev()], 1, status="running", fence=1)  # the pool's own: no wake
    assert await waiter.wait_for_work(0.2) is False
    await other.release_lease("r1", "w1")
    assert await waiter.wait_for_work(30) is True


async def test_a_lost_listening_connection_is_opened_again_at_the_next_wait(
    store_factory: StoreFactory,
) -> None:
    waiter = await store_factory("wake")
    if not isinstance(waiter, PostgresEventStore):
        pytest.skip("SQLite has no listening connection")
    notifier = await store_factory("wake")
    assert await waiter.wait_for_work(0.01) is False
    listener = waiter._listener
    assert listener is not None
    pid = listener._conn.get_server_pid()
    await raw_sql(notifier, f"SELECT pg_terminate_backend({pid})")  # the server drops it
    for _ in range(100):  # until the client has seen the socket close
        if listener._conn.is_closed():
            break
        await asyncio.sleep(0.02)
    waiting = asyncio.create_task(waiter.wait_for_work(30))
    while not waiting.done():  # a notification before the new LISTEN would be missed
        await notifier.notify_work()
        await asyncio.sleep(0.05)
    assert await waiting is True
    assert listener._conn.get_server_pid() != pid
