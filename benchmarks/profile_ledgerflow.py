"""Where ledgerflow's W1 (chain) and W2 (fan-out) time goes: wall-clock split and cProfile.

Usage::

    python -m benchmarks.profile_ledgerflow            # W1 and W2 at 200 tasks
    python -m benchmarks.profile_ledgerflow --n 1000 --top 25

Two views, each on a fresh store (WAL, synchronous=FULL):

1. Wall clock: the run's time spent awaiting ``store.append`` (thread hand-off,
   SQLite, fsync) against everything else on the event loop (decide, evolve,
   encode, agents, asyncio).
2. cProfile self-time grouped by library; the event loop's idle time waiting
   for the database thread shows up as ``select``/``epoll`` ("waiting on db").
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time
from typing import Any, cast

from benchmarks._common import fresh_db
from benchmarks.rl_workflows import ChainGoal, FanGoal, chain, fanout
from ledgerflow.eventstore import open_store
from ledgerflow.machines import Orchestrator

GROUPS = (
    ("waiting on db", ("select.epoll", "{method 'poll'", "{method 'control'")),
    ("transitions", ("/transitions/",)),
    ("pydantic", ("pydantic",)),
    ("msgspec", ("msgspec",)),
    ("sqlite3 (db thread)", ("sqlite3",)),
    ("hashlib", ("hashlib", "sha256")),
    ("aiosqlite", ("/aiosqlite/",)),
    ("eventstore", ("/eventstore/",)),
    ("contracts", ("/contracts/",)),
    # The runtime, split by job (issue 8): front door, driver, calls, leases.
    ("machines runtime (shell)", tuple(
        f"machines/{m}.py" for m in ("orchestrator", "driver", "calls", "leasing", "results",
                                    "origin")
    )),
    ("machines (decide/evolve)", ("/machines/",)),
    ("asyncio", ("/asyncio/", "_asyncio", "threading", "queue.py")),
)


def group(func: tuple[str, int, str]) -> str:
    where = f"{func[0]}:{func[2]}"
    for name, needles in GROUPS:
        if any(n in where for n in needles):
            return name
    return "other"


class TimedStore:
    """Pass-through store that adds up the wall time spent awaiting appends."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.append_s = 0.0
        self.appends = 0

    async def append(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await self._store.append(*args, **kwargs)
        finally:
            self.append_s += time.perf_counter() - t0
            self.appends += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def _once(workload: str, n: int, profiler: cProfile.Profile | None) -> dict[str, Any]:
    db = fresh_db(name=f"profile-{workload}.db")
    async with open_store(db) as raw:
        store = TimedStore(raw)
        # A duck-typed pass-through, not an EventStore subclass.
        orch = Orchestrator(cast(Any, store))
        wf, goal = (chain, ChainGoal(n=n)) if workload == "W1" else (fanout, FanGoal(n=n))
        if profiler is not None:
            profiler.enable()
        t0 = time.perf_counter()
        run = await orch.start(wf, goal)
        wall = time.perf_counter() - t0
        if profiler is not None:
            profiler.disable()
    assert run.status == "completed"
    return {"wall_s": wall, "append_s": store.append_s, "appends": store.appends}


def profile(workload: str, n: int, top: int) -> None:
    asyncio.run(_once(workload, n, None))  # warm-up
    plain = asyncio.run(_once(workload, n, None))
    profiler = cProfile.Profile()
    asyncio.run(_once(workload, n, profiler))
    wall, append = plain["wall_s"], plain["append_s"]
    print(f"\n== {workload}, n={n}: {wall * 1e3:.1f} ms, {n / wall:,.0f} tasks/s, "
          f"{wall / n * 1e6:.0f} µs/task; {plain['appends']} appends")
    print(f"   awaiting store.append: {append * 1e3:.1f} ms ({100 * append / wall:.0f}%), "
          f"{append / plain['appends'] * 1e6:.0f} µs per append; "
          f"the rest of the loop: {(wall - append) / n * 1e6:.0f} µs/task")
    stats = pstats.Stats(profiler)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    whole = sum(v[2] for v in raw.values()) or 1.0
    totals: dict[str, float] = {}
    for func, v in raw.items():
        totals[group(func)] = totals.get(group(func), 0.0) + v[2]
    print("   cProfile self-time by group (profiled run):")
    for name, secs in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"     {name:26} {100 * secs / whole:5.1f}%")
    print(f"   top {top} functions by self-time:")
    for func, v in sorted(raw.items(), key=lambda kv: -kv[1][2])[:top]:
        name = f"{func[0].rsplit('/', 2)[-1]}:{func[1]}({func[2]})"
        print(f"     {100 * v[2] / whole:5.1f}%  {v[1]:>7} calls  {name[:90]}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Profile ledgerflow's W1 and W2.")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--only", choices=("W1", "W2"), default=None)
    args = parser.parse_args()
    for workload in ("W1", "W2"):
        if args.only in (None, workload):
            profile(workload, args.n, args.top)


if __name__ == "__main__":
    main()
