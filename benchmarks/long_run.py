"""Long runs: resume and replay of a ~100,000-event run, with and without state snapshots.

The run is driven by the real orchestrator on SQLite (WAL, synchronous=FULL):
a plan of ``n`` instant tasks (5 events each) and one task held on a gate,
so that once everything else is done the process is killed (the drive is
cancelled) with ``5n + 5`` events in the log. Then, for each
``snapshot_every`` (0: no snapshots), it prints:

- the run's drive time, and what taking snapshots cost in it: encoding the
  state before an append and storing it after (total, per snapshot, and
  amortized per event of the run);
- the number of snapshots stored and the size of the last one;
- **resume**: ``load_run_state(check_chain=True)`` as every append-side
  operation calls it (time, and events read and folded), then the whole
  ``Orchestrator.resume`` that finishes the run;
- **replay**: ``load_run_state(at=last - 10)`` (``Orchestrator.state``, what
  ``replay --to`` asks), time and events folded;
- ``verify`` of the finished run (it folds the whole log, plus each snapshot).

Run::

    python -m benchmarks.long_run                 # n=20000 tasks, ~100,000 events
    python -m benchmarks.long_run --n 2000 --every 0,500
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from pydantic import BaseModel

from benchmarks._common import fresh_db
from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import Envelope, EventStore, open_store
from ledgerflow.machines import AgentContext, Orchestrator, Workflow, load_run_state
from ledgerflow.machines import snapshots as snaps
from ledgerflow.replay.verify import verify_run

RUN_ID = "long"
BIG_EVENTS = 64 * 2**20


class Wide(BaseModel):
    n: int


class Item(BaseModel):
    i: int


class Value(BaseModel):
    v: int


def wide_workflow(gate: asyncio.Event) -> Workflow:
    wf = Workflow("long-run", goal=Wide, max_concurrency=64)

    @wf.planner
    async def plan(goal: Wide, ctx: AgentContext) -> Plan:
        tasks = [Task(id=f"t{i}", agent="work", inputs={"i": i}) for i in range(goal.n)]
        return Plan(tasks=[*tasks, Task(id="wait", agent="wait", inputs={"i": -1})])

    @wf.agent(input=Item, output=Value)
    async def work(inp: Item, ctx: AgentContext) -> Value:
        return Value(v=inp.i % 7)

    @wf.agent(input=Item, output=Value)
    async def wait(inp: Item, ctx: AgentContext) -> Value:
        await gate.wait()
        return Value(v=0)

    return wf


class CountingStore:
    """A store whose ``read`` counts the envelopes it streams: the events a load folded."""

    def __init__(self, inner: EventStore) -> None:
        self.inner = inner
        self.envelopes_read = 0

    async def read(self, run_id: str, after: int = 0,
                   until: int | None = None) -> AsyncIterator[Envelope]:
        async for env in self.inner.read(run_id, after, until):
            self.envelopes_read += 1
            yield env

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class SnapshotCost:
    """Times the driver's snapshot writer (its take and store calls), for this benchmark only."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.encode_s = 0.0
        self.stored = 0

    @contextlib.contextmanager
    def measuring(self) -> Any:
        writer = snaps.SnapshotWriter
        take, store = writer.take, writer.store
        cost = self

        def timed_take(self: snaps.SnapshotWriter, state: Any) -> None:
            t0 = time.perf_counter()
            take(self, state)
            spent = time.perf_counter() - t0
            cost.seconds += spent
            cost.encode_s += spent

        async def timed_store(self: snaps.SnapshotWriter, st: EventStore,
                              appended: Sequence[Envelope]) -> None:
            t0 = time.perf_counter()
            before = self.written
            await store(self, st, appended)
            cost.seconds += time.perf_counter() - t0
            cost.stored += self.written - before

        writer.take = timed_take  # type: ignore[method-assign]
        writer.store = timed_store  # type: ignore[method-assign, assignment]
        try:
            yield self
        finally:
            writer.take = take  # type: ignore[method-assign]
            writer.store = store  # type: ignore[method-assign]


async def measure(db: str, n: int, every: int) -> dict[str, Any]:
    gate = asyncio.Event()
    found: dict[str, Any] = {"every": every}
    async with open_store(db, max_event_bytes=BIG_EVENTS) as store:
        orch = Orchestrator(store, snapshot_every=every, lease_ttl_s=5)
        with SnapshotCost().measuring() as cost:
            t0 = time.perf_counter()
            drive = asyncio.create_task(orch.start(wide_workflow(gate), Wide(n=n),
                                                   run_id=RUN_ID))
            target = 5 * n + 5
            while await store.last_seq(RUN_ID) < target:  # noqa: ASYNC110 - the log is the signal
                await asyncio.sleep(0.01)
            found["drive_s"] = time.perf_counter() - t0
            drive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drive
        events = await store.last_seq(RUN_ID)
        kept = await store.snapshots(RUN_ID)
        found.update(events=events, snapshot_s=cost.seconds, snapshots=cost.stored,
                     encode_s=cost.encode_s,
                     snapshot_bytes=len(kept[-1].state) if kept else 0,
                     latest_snapshot=kept[-1].seq if kept else 0)

        view: Any = CountingStore(store)
        t0 = time.perf_counter()
        await load_run_state(view, RUN_ID, check_chain=True)
        found["resume_load_s"] = time.perf_counter() - t0
        found["resume_read"] = view.envelopes_read

        view = CountingStore(store)
        t0 = time.perf_counter()
        await load_run_state(view, RUN_ID, at=events - 10)
        found["replay_s"] = time.perf_counter() - t0
        found["replay_read"] = view.envelopes_read

    gate.set()
    async with open_store(db, max_event_bytes=BIG_EVENTS) as store:
        t0 = time.perf_counter()
        run = await Orchestrator(store, snapshot_every=every, lease_wait_s=30).resume(
            RUN_ID, wide_workflow(gate))
        found["resume_s"] = time.perf_counter() - t0
        assert run.status == "completed", run.reason
        t0 = time.perf_counter()
        report = await verify_run(store, RUN_ID)
        found["verify_s"] = time.perf_counter() - t0
        assert report.ok, report.lines()
    return found


def table(rows: list[dict[str, Any]], n: int) -> str:
    lines = [
        f"Long run: {rows[0]['events']:,} events ({n:,} instant tasks of 5 events, and one "
        "held until the crash), SQLite, synchronous=FULL. Times in seconds.",
        "",
        "| snapshot_every | drive | snapshots stored | snapshot cost: total / per snapshot "
        "(encoding on the loop) / per event | last snapshot | resume: load (events read) | "
        "resume: whole | replay --to last-10 (events read) | verify |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        count = r["snapshots"] or 1
        per, enc = r["snapshot_s"] / count * 1e3, r["encode_s"] / count * 1e3
        cost = (f"{r['snapshot_s']:.2f} s / {per:.0f} ms ({enc:.0f} ms) / "
                f"{r['snapshot_s'] / r['events'] * 1e6:.1f} µs" if r["snapshots"] else "—")
        size = (f"{r['snapshot_bytes'] / 2**20:.1f} MiB at seq {r['latest_snapshot']:,}"
                if r["snapshots"] else "—")
        lines.append(
            f"| {r['every'] or 'off'} | {r['drive_s']:.2f} | {r['snapshots']} | {cost} | {size} | "
            f"{r['resume_load_s']:.3f} ({r['resume_read']:,}) | {r['resume_s']:.2f} | "
            f"{r['replay_s']:.3f} ({r['replay_read']:,}) | {r['verify_s']:.2f} |")
    return "\n".join(lines)


async def main_async(n: int, everies: list[int], directory: str) -> str:
    rows = []
    for every in everies:
        db = fresh_db(directory, f"long-{every}.db")
        rows.append(await measure(db, n, every))
    return table(rows, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument("--n", type=int, default=20_000, help="instant tasks (5 events each)")
    parser.add_argument("--every", default="0,1000,2000,5000",
                        help="snapshot_every values, comma-separated (0: no snapshots)")
    parser.add_argument("--dir", default=None, help="folder for the database files")
    args = parser.parse_args()
    everies = [int(x) for x in args.every.split(",")]
    with tempfile.TemporaryDirectory(prefix="long-run-") as tmp:
        print(asyncio.run(main_async(args.n, everies, args.dir or tmp)))


if __name__ == "__main__":
    main()
