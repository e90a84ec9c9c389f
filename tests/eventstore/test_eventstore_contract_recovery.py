"""The backend contract, part 2: opening existing stores, read-only, errors, tampering, processes.

Same fixtures as ``test_eventstore_contract.py`` (every backend, unchanged);
split only to keep each file short.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from typing import Any

import msgspec
import pytest
from eventstore_helpers import StoreFactory, ev, fill_up, make_room, raw_sql, store_url

from ledgerflow.eventstore import (
    ConcurrencyError,
    EventStore,
    StoreFullError,
    StoreNotFoundError,
    StoreReadOnlyError,
    chain_hash,
    check_chain,
)

# --- existing stores only, and read-only ---------------------------------------------------


async def test_opening_a_missing_store_without_create_creates_nothing(
    store_factory: StoreFactory,
) -> None:
    for options in ({"create": False}, {"read_only": True}):
        with pytest.raises(StoreNotFoundError, match="nothing was created"):
            await store_factory("missing", **options)
    # Nothing was created, so a later existing-only open still finds nothing.
    with pytest.raises(StoreNotFoundError):
        await store_factory("missing", read_only=True)


async def test_read_only_store_reads_everything_and_refuses_every_write(
    store_factory: StoreFactory,
) -> None:
    writer = await store_factory("shared")
    appended = await writer.append("r1", [ev("A"), ev("B")], 0, status="running")
    assert await writer.try_lease("r2", "alice", ttl_s=30)
    reader = await store_factory("shared", read_only=True)
    assert await reader.read_all("r1") == appended
    assert [e async for e in reader.read("r1")] == appended
    assert [r.run_id for r in await reader.runs()] == ["r1"]
    assert await reader.match_runs("r") == ["r1"]
    held = await reader.lease_of("r2")
    assert held is not None
    assert held[0] == "alice"
    writes = [
        reader.append("r1", [ev()], 2),
        reader.try_lease("r1", "bob", 30),
        reader.release_lease("r2", "alice"),
    ]
    for write in writes:
        with pytest.raises(StoreReadOnlyError, match="it was opened read-only"):
            await write
    assert await writer.last_seq("r1") == 2
    assert await writer.lease_of("r2") is not None
    # The writer goes on while the reader is open, and the reader sees it.
    await writer.append("r1", [ev("C")], 2)
    assert await reader.last_seq("r1") == 3


async def test_existing_only_open_of_an_existing_store_writes_normally(
    store_factory: StoreFactory,
) -> None:
    first = await store_factory("shared")
    await first.append("r1", [ev()], 0)
    again = await store_factory("shared", create=False)
    await again.append("r1", [ev()], 1)
    assert await first.last_seq("r1") == 2


# --- after a store error the store stays usable --------------------------------------------


async def test_full_disk_fails_the_append_but_keeps_every_event_and_the_lease_release(
    store: EventStore,
) -> None:
    acknowledged = await store.append("r1", [ev(i=i) for i in range(3)], 0, status="running")
    assert await store.try_lease("r1", "driver", ttl_s=30)
    await fill_up(store)
    big = [ev("Huge", blob="x" * 200_000) for _ in range(3)]
    with pytest.raises(StoreFullError, match="is full") as info:
        await store.append("r1", big, 3, status="failed")
    assert info.value.run_id == "r1"
    # Rolled back as a whole: acknowledged events kept, no partial batch, runs row unchanged.
    assert await store.read_all("r1") == acknowledged
    summary = await store.run("r1")
    assert summary is not None
    assert (summary.status, summary.last_seq) == ("running", 3)
    # The same store object still releases the failed driver's lease.
    await store.release_lease("r1", "driver")
    assert await store.lease_of("r1") is None
    assert await store.try_lease("r1", "resumer", ttl_s=30)
    await make_room(store)
    (env,) = await store.append("r1", [ev("Resumed")], 3)
    assert env.seq == 4
    assert check_chain("r1", await store.read_all("r1")) is None


# --- reopening, tampering behind the store's back, processes -------------------------------


async def test_reopening_keeps_the_log_and_continues_the_chain(
    store_factory: StoreFactory,
) -> None:
    first = await store_factory("shared")
    await first.append("r1", [ev(i=i) for i in range(3)], 0)
    await first.close()
    again = await store_factory("shared")
    await again.append("r1", [ev()], 3)
    assert check_chain("r1", await again.read_all("r1")) is None
    summary = await again.run("r1")
    assert summary is not None
    assert summary.last_seq == 4


_FORGED_HASH = "ab" * 32


@pytest.mark.parametrize(
    ("statements", "seq", "kind"),
    [
        (["UPDATE events SET data = '{\"i\": 99}' WHERE seq = 3"], 3, "hash"),
        (["UPDATE events SET type = 'Forged' WHERE seq = 4"], 4, "hash"),
        (["UPDATE events SET at = '2000-01-01T00:00:00.000000+00:00' WHERE seq = 2"], 2, "hash"),
        (["DELETE FROM events WHERE seq = 3"], 3, "gap"),
        (["DELETE FROM events WHERE seq = 1"], 1, "gap"),
        (
            [
                "UPDATE events SET seq = 1000 WHERE seq = 3",
                "UPDATE events SET seq = 3 WHERE seq = 4",
                "UPDATE events SET seq = 4 WHERE seq = 1000",
            ],
            3,
            "prev_hash",
        ),
        (
            ["UPDATE events SET data = (SELECT data FROM events WHERE seq = 4) WHERE seq = 2"],
            2,
            "hash",
        ),
        ([f"UPDATE events SET hash = '{_FORGED_HASH}' WHERE seq = 2"], 2, "hash"),
    ],
    ids=[
        "edited-data",
        "edited-type",
        "edited-time",
        "deleted-row",
        "deleted-first-row",
        "swapped-rows",
        "copied-data",
        "replaced-hash",
    ],
)
async def test_check_chain_names_the_seq_of_a_row_edited_behind_the_store(
    store: EventStore, statements: list[str], seq: int, kind: str
) -> None:
    await store.append("r1", [ev(i=i) for i in range(5)], 0)
    assert check_chain("r1", await store.read_all("r1")) is None
    await raw_sql(store, *statements)
    problem = check_chain("r1", await store.read_all("r1"))
    assert problem is not None
    assert (problem.seq, problem.kind) == (seq, kind)
    assert f"Event seq {seq} of run 'r1'" in problem.message


async def test_check_chain_names_the_next_seq_when_an_edited_row_was_rehashed(
    store: EventStore,
) -> None:
    await store.append("r1", [ev(i=i) for i in range(5)], 0)
    env = (await store.read_all("r1", after=1, until=2))[0]
    forged = b'{"i": 1000}'
    new_hash = chain_hash(env.prev_hash, "r1", 2, env.type, env.at, forged)
    await raw_sql(
        store, f"UPDATE events SET data = '{forged.decode()}', hash = '{new_hash}' WHERE seq = 2"
    )
    problem = check_chain("r1", await store.read_all("r1"))
    assert problem is not None
    assert (problem.seq, problem.kind) == (3, "prev_hash")
    assert "Event seq 3 of run 'r1' does not link to the event before it" in problem.message


async def test_append_after_tampering_still_refuses_a_stale_seq(store: EventStore) -> None:
    await store.append("r1", [ev(i=i) for i in range(3)], 0)
    await raw_sql(store, "DELETE FROM events WHERE seq = 3")
    with pytest.raises(ConcurrencyError) as info:
        await store.append("r1", [ev()], 3)  # the table, not a cache, is the truth
    assert info.value.actual_seq == 2


async def test_three_processes_racing_appends_lose_nothing(store: EventStore) -> None:
    import _race_worker  # noqa: PLC0415 - spawned children import it by this name

    await store.append("setup", [ev()], 0)  # the store exists before the race
    ctx = multiprocessing.get_context("spawn")
    out: Any = ctx.Queue()
    workers = [
        ctx.Process(
            target=_race_worker.append_many, args=(store_url(store), "r1", f"p{i}", 60, out)
        )
        for i in range(3)
    ]
    for w in workers:
        w.start()
    acknowledged = [await asyncio.to_thread(out.get, timeout=120) for _ in workers]
    for w in workers:
        await asyncio.to_thread(w.join, 60)
        assert w.exitcode == 0
    failures = [a for a in acknowledged if isinstance(a, str)]
    assert not failures, failures
    envs = await store.read_all("r1")
    summary = await store.run("r1")
    assert check_chain("r1", envs) is None
    assert len(envs) == 3 * 60 * 2
    assert summary is not None
    assert summary.last_seq == len(envs)
    stored = {(e.seq, e.hash) for e in envs}
    for acks in acknowledged:
        assert len(acks) == 60 * 2
        assert all((seq, h) in stored for seq, h, _, _ in acks)
    per_worker = sorted((d["worker"], d["n"]) for d in (msgspec.json.decode(e.data) for e in envs))
    assert per_worker == sorted((f"p{i}", n) for i in range(3) for n in range(60) for _ in "ab")
