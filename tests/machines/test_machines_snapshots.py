"""State snapshots: a long run resumes from the latest snapshot, folding only the tail.

The snapshot is a cache: decoded it must be exactly the fold (for every
prefix of real runs), one that is unusable in any way is ignored and the fold
is still right, a failure to store one never fails the run, and a crashed
run resumed from snapshots ends exactly like one resumed without.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
import zlib
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr
from snapshot_support import (
    BIG_EVENTS,
    ReadCountingStore,
    Value,
    Wide,
    crash_when,
    events_before_the_gate,
    largest_batch,
    steps_workflow,
    ticking_clock,
    wide_workflow,
)

from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import EventStore, NewEvent, open_store
from ledgerflow.examples import fanout, travel
from ledgerflow.machines import (
    AgentContext,
    ChainBrokenError,
    Orchestrator,
    RunState,
    Workflow,
    decode_event,
    evolve,
    load_run_state,
)
from ledgerflow.machines import snapshots as snaps
from ledgerflow.machines.snapshots import (
    SNAPSHOT_FORMAT,
    SnapshotWriter,
    decode_snapshot,
    encode_snapshot,
    snapshot_differences,
    snapshot_due,
)
from ledgerflow.machines.state import Escalation, TaskState
from ledgerflow.replay.verify import verify_run


async def _folds(store: EventStore, run_id: str) -> list[RunState]:
    """The fold after every seq, each a state of its own."""
    state = RunState(run_id=run_id)
    found = []
    for env in await store.read_all(run_id):
        evolve(state, decode_event(env.data))
        found.append(decode_snapshot(encode_snapshot(state)))
    return found


def _same(a: RunState, b: RunState) -> None:
    assert encode_snapshot(a) == encode_snapshot(b), snapshot_differences(a, b)


# -- the codec ----------------------------------------------------------------


async def test_every_prefix_of_real_runs_round_trips_through_a_snapshot(
    store: EventStore,
) -> None:
    runs = [
        await Orchestrator(store).start(
            travel.wf, travel.TripGoal(destination="Lisbon", passengers=2)),
        await Orchestrator(store).start(fanout.wf, fanout.Corpus(documents=12, nap_s=0)),
        await Orchestrator(store).start(wide_workflow(), Wide(n=30)),
        await Orchestrator(store).start(steps_workflow(), Wide(n=3)),
    ]
    stepped = runs[-1].state.tasks
    assert stepped["s0"].attempt == 2  # retried after its side effect: served on attempt 2
    assert len(stepped["s1"].steps) == 5
    assert next(iter(stepped["s0"].done_side_effects)).startswith("pay")
    for run in runs:
        assert run.status == "completed"
        state = RunState(run_id=run.run_id)
        for env in await store.read_all(run.run_id):
            evolve(state, decode_event(env.data))
            data = encode_snapshot(state)
            back = decode_snapshot(data)
            assert back == state, f"{run.run_id} at seq {env.seq}"
            assert encode_snapshot(back) == data  # order too: the ready queue, the tasks
        # What the driver held live (its plan_task caches aside) is the fold.
        assert snapshot_differences(run.state, state) == []


def test_the_codec_mirrors_every_field_of_the_state_in_order() -> None:
    # A field added to the state without its codec would be lost by a snapshot.
    for cls, mirror in snaps._MIRRORS:
        assert tuple(f.name for f in dataclasses.fields(cls)) == mirror.__struct_fields__


def test_a_snapshot_of_a_state_with_steps_escalations_and_requests_round_trips() -> None:
    from ledgerflow.machines import events as ev  # noqa: PLC0415

    started = ev.StepStarted(task_id="a", attempt=2, index=1, name="pay", request_hash="h",
                             request={"args": [1, (2, 3)], "kwargs": {}})
    recorded = ev.StepRecorded(task_id="a", attempt=2, index=0, name="llm", request_hash="g",
                               result={"text": "hi", "n": 1.5}, tokens=3, cost=0.25)
    task = TaskState(id="a", agent="x", needs=("b",), steps={0: recorded, 1: started},
                     done_side_effects={"pay:h": recorded}, confidence=1.0)
    state = RunState(run_id="r1", seq=9, tasks={"a": task}, forked_from=("r0", 4),
                     escalations={"a": Escalation("a", "low_confidence", "why", {"x": [1]})},
                     requested={"a": ev.ResolutionRequested(task_id="a", action="retry",
                                                            by="ops")},
                     planner_steps={0: recorded}, ready={"a": None})
    back = decode_snapshot(encode_snapshot(state))
    assert back.tasks["a"].steps[1].request == {"args": [1, [2, 3]], "kwargs": {}}  # as logged
    assert back.forked_from == ("r0", 4)
    assert isinstance(back.tasks["a"].steps[0], ev.StepRecorded)
    assert encode_snapshot(back) == encode_snapshot(state)


@pytest.mark.parametrize("data", [
    b"", b"not json", b"[]", b'["0000000000000000", {}]', b"\xff\xfe",
    b'["' + snaps.SNAPSHOT_SHAPE.encode() + b'", ["r1"]]',
])
def test_bytes_that_are_no_snapshot_of_this_shape_are_refused_typed(data: bytes) -> None:
    for stored in (data, zlib.compress(data), zlib.compress(data)[:-3]):
        with pytest.raises(snaps.SnapshotDecodeError):
            decode_snapshot(stored)


def test_a_snapshot_that_would_inflate_past_the_bound_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = encode_snapshot(RunState(run_id="r1", reason="x" * 10_000))
    monkeypatch.setattr(snaps, "MAX_STATE_BYTES", 1000)
    with pytest.raises(snaps.SnapshotDecodeError, match="inflates past 1000 bytes"):
        decode_snapshot(data)


# -- when ----------------------------------------------------------------------


@pytest.mark.parametrize(("last", "seq", "every", "size", "due"), [
    (0, 999, 1000, 0, False), (0, 1000, 1000, 0, True), (1990, 2003, 1000, 0, True),
    (2003, 2990, 1000, 0, False), (2003, 3000, 1000, 0, True), (5, 10**6, 0, 0, False),
    (999, 1000, 1, 0, True),
    # A 4 MB state: every 7,812 events at least, not 1,000.
    (1990, 2003, 1000, 4_000_000, False), (7000, 7812, 1000, 4_000_000, True),
    (0, 10**6, 0, 4_000_000, False),
])
def test_a_snapshot_is_due_when_a_multiple_of_the_interval_is_crossed(
    last: int, seq: int, every: int, size: int, due: bool
) -> None:
    assert snapshot_due(last, seq, every, size) is due


class _Recorder:
    def __init__(self) -> None:
        self.put: list[tuple[Any, ...]] = []

    async def put_snapshot(self, *args: Any, **kwargs: Any) -> None:
        self.put.append((*args, kwargs["keep"]))


async def test_a_snapshot_taken_past_its_batch_is_stored_with_the_next_one(
    store: EventStore,
) -> None:
    envs = await store.append("r1", [NewEvent("X", b"{}")] * 15, 0)
    writer = SnapshotWriter(every=10, keep=3)
    ahead = RunState(run_id="r1", seq=12)  # decided past the batch 1..10 being appended
    writer.take(ahead)
    assert writer.pending is not None
    recorder: Any = _Recorder()
    await writer.store(recorder, envs[:10])
    assert recorder.put == []  # seq 12 is not durable yet
    writer.take(RunState(run_id="r1", seq=15))  # one at a time: nothing new is taken
    await writer.store(recorder, envs[10:])
    ((run_id, seq, hash_, fmt, data, keep),) = recorder.put
    assert (run_id, seq, hash_, fmt, keep) == ("r1", 12, envs[11].hash, SNAPSHOT_FORMAT, 3)
    assert decode_snapshot(data) == ahead
    assert writer.pending is None
    assert writer.written == 1


@given(st.lists(st.integers(1, 700), min_size=1, max_size=60), st.integers(1, 500))
def test_taken_at_batch_ends_no_two_snapshots_are_further_apart_than_every_plus_a_batch(
    batches: list[int], every: int
) -> None:
    seq = last = 0
    for size in batches:
        seq += size
        if snapshot_due(last, seq, every):
            assert seq - last < every + size
            last = seq
    assert seq - last < every + max(batches)


def test_orchestrator_refuses_a_snapshot_every_that_is_no_count(store: EventStore) -> None:
    for bad in (-1, 1.5, True, "10"):
        with pytest.raises(ValueError, match="snapshot_every"):
            Orchestrator(store, snapshot_every=bad)  # type: ignore[arg-type]


# -- writing -------------------------------------------------------------------


async def test_a_run_stores_snapshots_as_it_goes_and_keeps_the_latest_two(
    store: EventStore,
) -> None:
    run = await Orchestrator(store, durable_dispatch=True, snapshot_every=20).start(
        wide_workflow(concurrency=2), Wide(n=40))
    assert run.status == "completed"
    kept = await store.snapshots(run.run_id)
    assert len(kept) == 2
    last = await store.last_seq(run.run_id)
    assert kept[-1].seq > last - 20 - 10  # the last one near the end (a batch here is small)
    envs = await store.read_all(run.run_id)
    folds = await _folds(store, run.run_id)
    for snap in kept:
        assert snap.format == SNAPSHOT_FORMAT
        assert snap.hash == envs[snap.seq - 1].hash
        _same(decode_snapshot(snap.state), folds[snap.seq - 1])


async def test_snapshot_every_0_stores_none(store: EventStore) -> None:
    run = await Orchestrator(store, snapshot_every=0).start(wide_workflow(), Wide(n=40))
    assert run.status == "completed"
    assert await store.snapshots(run.run_id) == []


class _RefusingSnapshots:
    def __init__(self, inner: EventStore) -> None:
        self.inner = inner

    async def put_snapshot(self, *args: Any, **kwargs: Any) -> None:
        raise OSError("disk quota exceeded")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_snapshot_that_cannot_be_stored_never_fails_the_run(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    refusing: Any = _RefusingSnapshots(store)
    with caplog.at_level(logging.WARNING, logger="ledgerflow"):
        run = await Orchestrator(refusing, snapshot_every=10).start(
            wide_workflow(concurrency=2), Wide(n=10))
    assert run.status == "completed"
    assert await store.snapshots(run.run_id) == []
    assert "Could not store the snapshot" in caplog.text
    assert "disk quota exceeded" in caplog.text


def test_a_state_that_does_not_encode_is_skipped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = RunState(run_id="r1", seq=10, goal={"x": object()})
    writer = SnapshotWriter(every=10)
    with caplog.at_level(logging.WARNING, logger="ledgerflow"):
        writer.take(state)
    assert writer.pending is None
    assert writer.failures == 1
    assert "does not encode" in caplog.text


# -- loading ------------------------------------------------------------------


def _other_run_state(run_id: str, seq: int) -> bytes:
    return encode_snapshot(RunState(run_id=run_id + "x", seq=seq))


@pytest.mark.parametrize("spoil", ["format", "hash", "garbage", "shape", "other_seq",
                                   "other_run"])
async def test_an_unusable_snapshot_is_ignored_and_the_fold_is_still_right(
    store: EventStore, spoil: str, caplog: pytest.LogCaptureFixture
) -> None:
    run = await Orchestrator(store, durable_dispatch=True, snapshot_every=25).start(
        wide_workflow(concurrency=2), Wide(n=20))
    await store.prune_snapshots(run.run_id, keep=1)
    (snap,) = await store.snapshots(run.run_id)
    envs = await store.read_all(run.run_id)
    fmt, hash_, data = snap.format, snap.hash, snap.state
    if spoil == "format":
        fmt = SNAPSHOT_FORMAT + 1
    elif spoil == "hash":
        hash_ = envs[snap.seq - 2].hash
    elif spoil == "garbage":
        data = b"\x00\x01 not a snapshot"
    elif spoil == "shape":
        data = zlib.compress(msgspec.json.encode(
            ["0" * 16, msgspec.json.decode(zlib.decompress(data))[1]]))
    elif spoil == "other_seq":
        data = encode_snapshot(await load_run_state(store, run.run_id, at=snap.seq - 1,
                                                    snapshots=False))
    else:
        data = _other_run_state(run.run_id, snap.seq)
    await store.put_snapshot(run.run_id, snap.seq, hash_, fmt, data)
    counting: Any = ReadCountingStore(store)
    with caplog.at_level(logging.WARNING, logger="ledgerflow"):
        state = await load_run_state(counting, run.run_id, check_chain=True)
    _same(state, await load_run_state(store, run.run_id, snapshots=False))
    # Folded from the start: the one envelope read to check the hash, then all of them.
    assert counting.read_envelopes >= len(envs)
    if spoil != "format":
        assert "Ignored the snapshot" in caplog.text


async def test_a_latest_snapshot_unusable_falls_back_to_the_one_before(store: EventStore) -> None:
    run = await Orchestrator(store, durable_dispatch=True, snapshot_every=20).start(
        wide_workflow(concurrency=2), Wide(n=30))
    older, latest = await store.snapshots(run.run_id)
    await store.put_snapshot(run.run_id, latest.seq, latest.hash, latest.format, b"garbage")
    counting: Any = ReadCountingStore(store)
    state = await load_run_state(counting, run.run_id, check_chain=True)
    _same(state, await load_run_state(store, run.run_id, snapshots=False))
    last = await store.last_seq(run.run_id)
    assert counting.read_envelopes == 2 + last - older.seq  # two hash checks, then the tail


async def test_an_edit_after_the_snapshot_is_still_a_broken_chain_on_load(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with open_store(path) as store:
        run = await Orchestrator(store, snapshot_every=0).start(
            wide_workflow(concurrency=2), Wide(n=20))
        last = await store.last_seq(run.run_id)
        at = last - 10  # a snapshot taken ten events before the end
        envs = await store.read_all(run.run_id)
        state = await load_run_state(store, run.run_id, at=at)
        await store.put_snapshot(run.run_id, at, envs[at - 1].hash, SNAPSHOT_FORMAT,
                                 encode_snapshot(state))
        counting: Any = ReadCountingStore(store)
        await load_run_state(counting, run.run_id, check_chain=True)
        assert counting.read_envelopes == 1 + 10  # it is used
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE events SET data = json_set(data, '$.reason', 'edited') "
                     "WHERE run_id = ? AND seq = ?", (run.run_id, last - 1))
    conn.close()
    async with open_store(path) as store:
        with pytest.raises(ChainBrokenError) as info:
            await load_run_state(store, run.run_id, check_chain=True)
        assert info.value.seq == last - 1


async def test_load_at_a_seq_starts_from_the_latest_snapshot_at_or_before_it(
    store: EventStore,
) -> None:
    run = await Orchestrator(store, durable_dispatch=True, snapshot_every=15).start(
        wide_workflow(concurrency=2), Wide(n=30))
    folds = await _folds(store, run.run_id)
    snapshots = await store.snapshots(run.run_id)
    for at in (1, snapshots[0].seq - 1, snapshots[0].seq, snapshots[0].seq + 3,
               snapshots[-1].seq, len(folds)):
        counting: Any = ReadCountingStore(store)
        _same(await load_run_state(counting, run.run_id, at=at), folds[at - 1])
        below = [s.seq for s in snapshots if s.seq <= at]
        if below:
            assert counting.read_envelopes == 1 + at - below[-1]


# -- crash and resume -----------------------------------------------------------


async def _crashed_run(path: Path, every: int, n: int, *, durable: bool = True,
                       lease_ttl_s: float = 0.2) -> tuple[str, int]:
    """A wide run killed once everything but its gated task is done: its id and log length."""
    gate = asyncio.Event()
    async with open_store(path, max_event_bytes=BIG_EVENTS) as store:
        # Durable dispatch: agents wait for their commit, so batches stay small.
        orch = Orchestrator(store, snapshot_every=every, lease_ttl_s=lease_ttl_s,
                            clock=ticking_clock(),
                            durable_dispatch=durable)
        drive = asyncio.create_task(orch.start(wide_workflow(gate, concurrency=8), Wide(n=n),
                                               run_id="r1"))
        await crash_when(store, "r1", events_before_the_gate(n), drive)
        return "r1", await store.last_seq("r1")


async def _resume(path: Path, every: int) -> tuple[Any, int, list[Any]]:
    gate = asyncio.Event()
    gate.set()
    async with open_store(path, max_event_bytes=BIG_EVENTS) as store:
        counting: Any = ReadCountingStore(store)
        run = await Orchestrator(counting, snapshot_every=every, lease_wait_s=10).resume(
            "r1", wide_workflow(gate, concurrency=8))
        return run, counting.read_envelopes, await store.read_all("r1")


async def test_resume_of_a_long_run_folds_only_the_tail_after_its_snapshot(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.db"
    run_id, crashed_at = await _crashed_run(path, every=100, n=200)
    async with open_store(path, max_event_bytes=BIG_EVENTS) as store:
        snap = await store.latest_snapshot(run_id)
        envs = await store.read_all(run_id)
    assert snap is not None
    run, read, _ = await _resume(path, every=100)
    assert run.status == "completed"
    # The resume's load read the snapshot's envelope, then the tail only.
    assert read == 1 + crashed_at - snap.seq
    assert crashed_at - snap.seq <= 100 + largest_batch(envs, after=100)
    assert read < crashed_at / 2


async def test_a_crashed_run_resumed_from_snapshots_ends_as_one_resumed_without(
    tmp_path: Path,
) -> None:
    ends = []
    for every in (30, 0):
        path = tmp_path / f"every{every}.db"
        await _crashed_run(path, every=every, n=60)
        run, _, envs = await _resume(path, every=every)
        assert run.status == "completed"
        async with open_store(path) as store:
            _same(run.state, await load_run_state(store, "r1", snapshots=False))
            _same(await load_run_state(store, "r1"), run.state)
            assert bool(await store.snapshots("r1")) == bool(every)
        ends.append((run.state.to_dict(), [e.type for e in envs][-6:]))
    assert ends[0] == ends[1]


@pytest.mark.slow
async def test_a_100k_event_run_resumes_and_replays_from_its_snapshots(tmp_path: Path) -> None:
    path = tmp_path / "long.db"
    n = 20_000
    every = snaps.DEFAULT_SNAPSHOT_EVERY
    # A longer lease: a 20,000-task commit holds the loop longer than 0.2 s.
    run_id, crashed_at = await _crashed_run(path, every=every, n=n, durable=False,
                                            lease_ttl_s=3)
    assert crashed_at >= 100_000
    async with open_store(path, max_event_bytes=BIG_EVENTS) as store:
        snap = await store.latest_snapshot(run_id)
        envs = await store.read_all(run_id)
    assert snap is not None
    # A big state is snapshotted less often than `every` (a bound on bytes written per event).
    interval = max(every, len(zlib.decompress(snap.state)) // snaps.SNAPSHOT_BYTES_PER_EVENT)
    assert crashed_at - snap.seq <= interval + largest_batch(envs, after=every)
    run, read, _ = await _resume(path, every=every)
    assert run.status == "completed"
    assert read == 1 + crashed_at - snap.seq, "the resume folded more than the tail"
    async with open_store(path, max_event_bytes=BIG_EVENTS) as store:
        counting: Any = ReadCountingStore(store)
        at = crashed_at - 10
        replayed = await load_run_state(counting, run_id, at=at)
        latest = await store.latest_snapshot(run_id, at_most_seq=at)
        assert latest is not None
        assert counting.read_envelopes == 1 + at - latest.seq
        _same(replayed, await load_run_state(store, run_id, at=at, snapshots=False))


class _KeyGoal(BaseModel):
    n: int
    api_key: SecretStr


class _KeyIn(BaseModel):
    i: int
    api_key: SecretStr


async def test_a_snapshot_holds_a_secret_field_as_the_log_does_by_reference(
    tmp_path: Path,
) -> None:
    key = "sk-live-snapshot-91c3"
    wf = Workflow("keyed", goal=_KeyGoal)
    used: list[str] = []

    @wf.planner
    async def plan(goal: _KeyGoal, ctx: AgentContext) -> Plan:
        return Plan(tasks=[Task(id=f"k{i}", agent="keyed", inputs={
            "i": i, "api_key": "$goal.api_key"}) for i in range(goal.n)])

    @wf.agent(input=_KeyIn, output=Value)
    async def keyed(inp: _KeyIn, ctx: AgentContext) -> Value:
        used.append(inp.api_key.get_secret_value())
        return Value(v=inp.i)

    async with open_store(tmp_path / "runs.db") as store:
        run = await Orchestrator(store, snapshot_every=5, durable_dispatch=True).start(
            wf, _KeyGoal(n=4, api_key=SecretStr(key)))
        assert run.status == "completed"
        stored = await store.snapshots(run.run_id)
        assert stored
        assert used == [key] * 4
        for snap in stored:
            assert key.encode() not in zlib.decompress(snap.state)
            assert b"$secret" in zlib.decompress(snap.state)
        report = await verify_run(store, run.run_id)
    assert report.ok, report.lines()
