"""Replay, ledgerflow: fold a ~n-event log vs merely reading and msgspec-decoding its rows.

The log is one fan-out run made by the real decider (``rl_synth``) and
written with the store's ``append`` in batches of ~50,000 events (a valid,
hash-chained log, as the runtime would write it; building it is not timed).
``--n`` is the number of events (1,000,000 by default). Timed, each on a
fresh store connection:

- ``sqlite3 + msgspec``: plain sqlite3 SELECT of the data column, each row
  decoded with the typed event decoder (no envelopes): the floor.
- ``read_all + decode``: the store's read path plus ``decode_event``.
- ``load_run_state``: the whole fold (read, decode, evolve).
- ``load_run_state(at=1000)``: must not read or fold past seq 1,000; beside it
  ``at=3`` (start, the plan, its acceptance), since the plan of a
  200,000-task run is two ~13 MB events and most of the cost of any prefix.

Pass ``--dir`` with an existing log (from an earlier run) to skip the build.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks._common import Result, cli, result
from benchmarks.rl_synth import fanout_decisions
from ledgerflow.eventstore import NewEvent, open_store
from ledgerflow.machines import decode_event, encode_event, load_run_state

RUN_ID = "replay-bench"
BATCH_EVENTS = 50_000
AT = 1000
BIG = 256 * 2**20


async def build(db: str, n_events: int) -> int:
    """Write a fan-out run of about ``n_events`` events; return its last seq."""
    tasks = max(1, (n_events - 9) // 5)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    seq = 0
    # A plan of 20,000+ tasks is over the default 1 MiB event limit; raise it.
    async with open_store(db, max_event_bytes=BIG) as store:
        if await store.last_seq(RUN_ID):
            return await store.last_seq(RUN_ID)
        pending: list[NewEvent] = []
        for events in fanout_decisions(tasks, RUN_ID):
            pending.extend(NewEvent(e.type, encode_event(e)) for e in events)
            if len(pending) >= BATCH_EVENTS:
                await store.append(RUN_ID, pending, expected_seq=seq, at=at, status="running")
                seq += len(pending)
                pending = []
        if pending:
            await store.append(RUN_ID, pending, expected_seq=seq, at=at, status="completed")
            seq += len(pending)
    return seq


def read_decode_sqlite3(db: str) -> tuple[int, float]:
    t0 = time.perf_counter()
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT CAST(data AS BLOB) FROM events WHERE run_id = ? ORDER BY seq", (RUN_ID,)
    ).fetchall()
    count = sum(1 for (data,) in rows if decode_event(data) is not None)
    conn.close()
    return count, time.perf_counter() - t0


async def read_decode_store(db: str) -> tuple[int, float]:
    async with open_store(db) as store:
        t0 = time.perf_counter()
        envelopes = await store.read_all(RUN_ID)
        count = sum(1 for e in envelopes if decode_event(e.data) is not None)
        return count, time.perf_counter() - t0


async def fold(db: str, at: int | None) -> tuple[int, str, float]:
    async with open_store(db) as store:
        t0 = time.perf_counter()
        state = await load_run_state(store, RUN_ID, at=at)
        return state.seq, state.status.value, time.perf_counter() - t0


async def _run(n: int, db: str) -> Result:
    t0 = time.perf_counter()
    last = await build(db, n)
    build_s = time.perf_counter() - t0
    floor_n, floor_s = read_decode_sqlite3(db)
    read_n, read_s = await read_decode_store(db)
    seq, status, fold_s = await fold(db, None)
    at_seq, _, at_s = await fold(db, AT)
    plan_seq, _, plan_s = await fold(db, 3)  # RunStarted, PlanProposed, PlanAccepted
    assert floor_n == read_n == seq == last, (floor_n, read_n, seq, last)
    assert status == "completed"
    assert at_seq == min(AT, last)
    db_mb = Path(db).stat().st_size / 2**20  # noqa: ASYNC240 - after the timings
    return result(
        system="ledgerflow", workload="Replay", n=seq, steps=seq, seconds=fold_s,
        events=seq, build_s=build_s, db_mb=db_mb,
        floor_sqlite3_s=floor_s, read_decode_s=read_s, fold_s=fold_s,
        fold_events_per_s=seq / fold_s, fold_vs_read_decode=fold_s / read_s,
        fold_vs_sqlite3_floor=fold_s / floor_s,
        at=at_seq, at_s=at_s, plan_only_s=plan_s, plan_seq=plan_seq,
    )


def run(n: int, db: str) -> Result:
    return asyncio.run(_run(n, db))


if __name__ == "__main__":
    cli(run, default_n=1_000_000, keep=True)
