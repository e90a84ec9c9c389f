"""The backend contract: every EventStore backend must pass these, unchanged."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from eventstore_helpers import StoreFactory, ev

from ledgerflow.eventstore import (
    GENESIS_HASH,
    ConcurrencyError,
    EventStore,
    EventTooLargeError,
    InvalidAppendError,
    InvalidQueryError,
    NewEvent,
    StoreClosedError,
    chain_hash,
    check_chain,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


async def test_store_satisfies_the_protocol(store: EventStore) -> None:
    assert isinstance(store, EventStore)


async def test_append_assigns_gapless_seqs_and_chains_hashes(store: EventStore) -> None:
    first = await store.append("r1", [ev("A", i=1), ev("B", i=2)], 0, at=T0)
    second = await store.append("r1", [ev("C", i=3)], 2, at=T0)
    envs = first + second
    assert [e.seq for e in envs] == [1, 2, 3]
    assert envs[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(envs):
        assert after.prev_hash == before.hash
    for e in envs:
        assert e.hash == chain_hash(e.prev_hash, "r1", e.seq, e.type, e.at, e.data)
    assert check_chain("r1", await store.read_all("r1")) is None


async def test_read_returns_exactly_what_append_returned(store: EventStore) -> None:
    appended = await store.append("r1", [ev("A", x="é ☃"), ev("B", y=[1, 2])], 0)
    assert await store.read_all("r1") == appended
    assert [e async for e in store.read("r1")] == appended


async def test_time_is_stored_in_utc_and_round_trips_to_the_microsecond(
    store: EventStore,
) -> None:
    lisbon_summer = timezone(timedelta(hours=1))
    at = datetime(2024, 7, 1, 13, 0, 0, 1, tzinfo=lisbon_summer)
    (env,) = await store.append("r1", [ev()], 0, at=at)
    (read,) = await store.read_all("r1")
    assert read.at == at
    assert read.at.utcoffset() == timedelta(0)
    assert read.at == env.at


async def test_default_time_is_now_in_utc(store: EventStore) -> None:
    before = datetime.now(UTC)
    (env,) = await store.append("r1", [ev()], 0)
    assert before <= env.at <= datetime.now(UTC)


async def test_runs_have_independent_seqs(store: EventStore) -> None:
    await store.append("r1", [ev(), ev()], 0)
    (env,) = await store.append("r2", [ev()], 0)
    assert env.seq == 1
    assert env.prev_hash == GENESIS_HASH
    assert await store.last_seq("r1") == 2
    assert await store.last_seq("r2") == 1


@pytest.mark.parametrize("stale", [0, 1, 3, 9], ids=["zero", "behind", "ahead", "far-ahead"])
async def test_append_rejects_stale_expected_seq(store: EventStore, stale: int) -> None:
    await store.append("r1", [ev(), ev()], 0, status="running")
    with pytest.raises(ConcurrencyError) as info:
        await store.append("r1", [ev("Late")], stale, status="failed")
    assert (info.value.run_id, info.value.expected_seq, info.value.actual_seq) == ("r1", stale, 2)
    assert f"at seq {stale}: the log is already at seq 2" in str(info.value)
    assert [e.type for e in await store.read_all("r1")] == ["Ticked", "Ticked"]
    summary = await store.run("r1")
    assert summary is not None
    assert (summary.status, summary.last_seq) == ("running", 2)


async def test_first_append_of_a_new_run_must_expect_seq_zero(store: EventStore) -> None:
    with pytest.raises(ConcurrencyError):
        await store.append("new", [ev()], 1)
    assert await store.last_seq("new") == 0
    assert await store.run("new") is None


async def test_two_concurrent_appenders_on_one_run_exactly_one_wins(
    store_factory: StoreFactory,
) -> None:
    a = await store_factory("shared")
    b = await store_factory("shared")
    await a.append("r1", [ev()], 0)
    results = await asyncio.gather(
        a.append("r1", [ev("FromA"), ev("FromA")], 1),
        b.append("r1", [ev("FromB")], 1),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, list)]
    losers = [r for r in results if isinstance(r, ConcurrencyError)]
    assert len(winners) == 1
    assert len(losers) == 1
    envs = await b.read_all("r1")
    assert envs[1:] == winners[0]
    assert check_chain("r1", envs) is None


async def test_many_concurrent_appenders_with_retries_keep_every_acknowledged_event(
    store_factory: StoreFactory,
) -> None:
    stores = [await store_factory("shared") for _ in range(4)]

    async def writer(store: EventStore, name: str) -> list[tuple[int, str]]:
        acknowledged = []
        for n in range(25):
            while True:
                seq = await store.last_seq("r1")
                try:
                    envs = await store.append("r1", [ev(writer=name, n=n)], seq)
                except ConcurrencyError:
                    await asyncio.sleep(0)
                    continue
                acknowledged += [(e.seq, e.hash) for e in envs]
                break
        return acknowledged

    acked = await asyncio.gather(*(writer(s, f"w{i}") for i, s in enumerate(stores)))
    envs = await stores[0].read_all("r1")
    assert check_chain("r1", envs) is None
    assert len(envs) == 100
    stored = {(e.seq, e.hash) for e in envs}
    assert all(pair in stored for pairs in acked for pair in pairs)


async def test_oversized_event_is_refused_and_nothing_is_written(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory(max_event_bytes=64)
    big = NewEvent("Huge", msgspec.json.encode({"blob": "x" * 100}))
    with pytest.raises(EventTooLargeError) as info:
        await store.append("r1", [ev("Small"), big], 0)
    err = info.value
    assert (err.run_id, err.type, err.size, err.limit) == ("r1", "Huge", len(big.data), 64)
    assert "'Huge'" in str(err)
    assert "'r1'" in str(err)
    assert await store.last_seq("r1") == 0
    assert await store.run("r1") is None


async def test_event_exactly_at_the_size_limit_is_accepted(store_factory: StoreFactory) -> None:
    data = msgspec.json.encode({"blob": "x" * 50})
    store = await store_factory(max_event_bytes=len(data))
    assert store.max_event_bytes == len(data)
    (env,) = await store.append("r1", [NewEvent("Edge", data)], 0)
    assert env.data == data


@pytest.mark.parametrize(
    ("run_id", "events", "expected_seq", "at", "needle"),
    [
        ("r1", [], 0, None, "no events"),
        ("r1", [NewEvent("A", b"{}")], -1, None, "expected_seq"),
        ("", [NewEvent("A", b"{}")], 0, None, "run id"),
        ("r1", [NewEvent("A", b"{}")], 0, datetime(2024, 1, 1), "timezone"),
        ("r1", [NewEvent("A", b"[1, 2]")], 0, None, "not a JSON object"),
        ("r1", [NewEvent("A", b"{not json")], 0, None, "not a JSON object"),
        ("r1", [NewEvent("A", '{"a": 1}')], 0, None, "msgspec.json.encode"),  # type: ignore[arg-type]
    ],
    ids=["no-events", "negative-seq", "empty-run-id", "naive-time", "array", "garbage", "str-data"],
)
async def test_malformed_append_is_refused_and_nothing_is_written(
    store: EventStore,
    run_id: str,
    events: list[NewEvent],
    expected_seq: int,
    at: datetime | None,
    needle: str,
) -> None:
    with pytest.raises(InvalidAppendError, match=needle):
        await store.append(run_id, events, expected_seq, at=at)
    assert await store.runs() == []


@pytest.mark.parametrize(
    ("after", "until", "expected"),
    [
        (0, None, [1, 2, 3, 4, 5]),
        (2, None, [3, 4, 5]),
        (0, 3, [1, 2, 3]),
        (1, 4, [2, 3, 4]),
        (3, 3, []),
        (4, 2, []),
        (5, None, []),
        (0, 99, [1, 2, 3, 4, 5]),
    ],
)
async def test_read_until_and_after(
    store: EventStore, after: int, until: int | None, expected: list[int]
) -> None:
    await store.append("r1", [ev(i=i) for i in range(5)], 0)
    assert [e.seq for e in await store.read_all("r1", after, until)] == expected
    assert [e.seq async for e in store.read("r1", after, until)] == expected


async def test_read_streams_many_chunks_in_seq_order(store: EventStore) -> None:
    seq = 0
    for _ in range(5):
        envs = await store.append("r1", [ev(i=i) for i in range(500)], seq)
        seq = envs[-1].seq
    streamed = [e async for e in store.read("r1")]
    assert [e.seq for e in streamed] == list(range(1, 2501))
    assert streamed == await store.read_all("r1")
    assert [e.seq async for e in store.read("r1", after=999, until=2001)] == list(range(1000, 2002))


async def test_unknown_run_reads_empty(store: EventStore) -> None:
    assert await store.read_all("nope") == []
    assert [e async for e in store.read("nope")] == []
    assert await store.last_seq("nope") == 0
    assert await store.run("nope") is None


async def test_runs_projection_updated_in_same_transaction(store: EventStore) -> None:
    t1 = T0
    t2 = T0 + timedelta(seconds=5)
    t3 = T0 + timedelta(seconds=9)
    await store.append("r1", [ev(), ev()], 0, at=t1)
    first = await store.run("r1")
    assert first is not None
    assert (first.status, first.label, first.last_seq) == ("", "", 2)
    assert first.created_at == first.updated_at == t1

    await store.append("r1", [ev()], 2, status="running", label="travel", at=t2)
    await store.append("r1", [ev()], 3, at=t3)  # status and label kept when not given
    summary = await store.run("r1")
    assert summary is not None
    assert (summary.status, summary.label, summary.last_seq) == ("running", "travel", 4)
    assert (summary.created_at, summary.updated_at) == (t1, t3)

    with pytest.raises(ConcurrencyError):
        await store.append("r1", [ev()], 3, status="failed", at=t3 + timedelta(seconds=1))
    assert await store.run("r1") == summary


async def test_runs_lists_newest_updated_first_and_filters_by_status(store: EventStore) -> None:
    for i, (run_id, status) in enumerate([("a", "done"), ("b", "failed"), ("c", "done")]):
        await store.append(run_id, [ev()], 0, status=status, at=T0 + timedelta(seconds=i))
    await store.append("a", [ev()], 1, at=T0 + timedelta(seconds=10))
    assert [r.run_id for r in await store.runs()] == ["a", "c", "b"]
    assert [r.run_id for r in await store.runs(status="done")] == ["a", "c"]
    assert [r.run_id for r in await store.runs(status="failed")] == ["b"]
    assert [r.run_id for r in await store.runs(limit=2)] == ["a", "c"]
    assert await store.runs(status="cancelled") == []


async def test_lease_is_exclusive_until_expiry(store: EventStore) -> None:
    assert await store.try_lease("r1", "alice", ttl_s=0.3)
    assert not await store.try_lease("r1", "bob", ttl_s=0.3)
    assert await store.try_lease("r2", "bob", ttl_s=0.3)  # leases are per run
    await asyncio.sleep(0.4)
    assert await store.try_lease("r1", "bob", ttl_s=30)
    assert not await store.try_lease("r1", "alice", ttl_s=30)


async def test_lease_owner_renews_and_release_frees_it(store: EventStore) -> None:
    assert await store.try_lease("r1", "alice", ttl_s=0.2)
    assert await store.try_lease("r1", "alice", ttl_s=30)  # renewed past the first expiry
    await asyncio.sleep(0.3)
    assert not await store.try_lease("r1", "bob", ttl_s=30)
    await store.release_lease("r1", "bob")  # not the owner: nothing happens
    assert not await store.try_lease("r1", "bob", ttl_s=30)
    await store.release_lease("r1", "alice")
    assert await store.try_lease("r1", "bob", ttl_s=30)


async def test_lease_is_exclusive_across_store_objects(store_factory: StoreFactory) -> None:
    a = await store_factory("shared")
    b = await store_factory("shared")
    results = await asyncio.gather(
        *(s.try_lease("r1", owner, 30) for s, owner in [(a, "a"), (b, "b")] * 3)
    )
    assert sorted(set(results)) == [False, True]
    assert results.count(True) == 3  # the winner's renewals succeed, the loser's fail


async def test_closed_store_refuses_use_and_closing_twice_is_harmless(store: EventStore) -> None:
    await store.append("r1", [ev()], 0)
    await store.close()
    await store.close()
    with pytest.raises(StoreClosedError, match="used after it was closed"):
        await store.append("r1", [ev()], 1)
    with pytest.raises(StoreClosedError):
        await store.read_all("r1")
    with pytest.raises(StoreClosedError):
        [e async for e in store.read("r1")]


async def test_store_is_an_async_context_manager(store_factory: StoreFactory) -> None:
    store = await store_factory()
    async with store as entered:
        assert entered is store
        await store.append("r1", [ev()], 0)
    with pytest.raises(StoreClosedError):
        await store.last_seq("r1")


# --- run-id prefixes and lease holders ------------------------------------------------------


async def test_match_runs_finds_prefixes_sorted_and_limited(store: EventStore) -> None:
    for run_id in ["7f3a-2", "7f3a-1", "7f4b", "Abc", "abd", "x%y", "x_y", "xzy"]:
        await store.append(run_id, [ev()], 0)
    assert await store.match_runs("7f3a") == ["7f3a-1", "7f3a-2"]
    assert await store.match_runs("7f") == ["7f3a-1", "7f3a-2"]  # limit 2: ambiguous
    assert await store.match_runs("7f", limit=10) == ["7f3a-1", "7f3a-2", "7f4b"]
    assert await store.match_runs("7f4") == ["7f4b"]
    assert await store.match_runs("7f4b") == ["7f4b"]
    assert await store.match_runs("ab", limit=10) == ["abd"]  # case-sensitive
    assert await store.match_runs("x%", limit=10) == ["x%y"]  # wildcards are literal
    assert await store.match_runs("x_", limit=10) == ["x_y"]
    assert await store.match_runs("nope") == []


@pytest.mark.parametrize("limit", [0, -1, True, "2"], ids=["zero", "negative", "bool", "str"])
async def test_match_runs_refuses_a_bad_limit(store: EventStore, limit: object) -> None:
    with pytest.raises(InvalidQueryError, match="limit must be an int >= 1"):
        await store.match_runs("r", limit=limit)  # type: ignore[arg-type]


async def test_lease_of_names_the_live_holder_and_forgets_released_leases(
    store: EventStore,
) -> None:
    assert await store.lease_of("r1") is None
    assert await store.try_lease("r1", "worker-7", ttl_s=30)
    held = await store.lease_of("r1")
    assert held is not None
    owner, expires_at = held
    assert owner == "worker-7"
    # Within a minute of this machine's clock either way (the PostgreSQL
    # server may be another machine; no wall-clock timing is asserted).
    assert abs(expires_at - (time.time() + 30)) < 60
    await store.release_lease("r1", "worker-7")
    assert await store.lease_of("r1") is None


async def test_lease_of_treats_an_expired_lease_as_free(store: EventStore) -> None:
    assert await store.try_lease("r1", "alice", ttl_s=0.05)
    await asyncio.sleep(0.2)
    assert await store.lease_of("r1") is None
    assert await store.try_lease("r1", "bob", ttl_s=30)


# --- ranges and limits both backends now clamp ------------------------------------------


@pytest.mark.parametrize(
    ("after", "until", "expected"),
    [(-(2**70), None, [1, 2, 3]), (0, 2**70, [1, 2, 3]), (2**70, None, []), (1, -(2**70), [])],
    ids=["after-far-below", "until-far-above", "after-far-above", "until-far-below"],
)
async def test_reads_far_outside_the_seq_range_are_clamped_not_errors(
    store: EventStore, after: int, until: int | None, expected: list[int]
) -> None:
    await store.append("r1", [ev(), ev(), ev()], 0)
    assert [e.seq for e in await store.read_all("r1", after, until)] == expected
    assert [e.seq async for e in store.read("r1", after, until)] == expected


@pytest.mark.parametrize("expected_seq", [2**63 - 1, 2**63 + 5], ids=["at-max", "past-max"])
async def test_append_past_the_largest_seq_is_refused(
    store: EventStore, expected_seq: int
) -> None:
    with pytest.raises(InvalidAppendError, match="beyond the largest seq"):
        await store.append("r1", [ev()], expected_seq)
    assert await store.runs() == []
