"""Core, ledgerflow: per-decision cost of the pure core (decide + evolve), no I/O, profiled.

Feeds the facts of an n-task fan-out (one ``OutputReceived`` per task: the
decision validates the output, records it, marks the task succeeded and, for
the last one, readies and dispatches the join) to ``machines.advance`` and
times it; then profiles the same with cProfile and splits the time among
``transitions``, pydantic, msgspec, contracts (reference resolution, output
validation) and ledgerflow's own machines code.
"""

from __future__ import annotations

import cProfile
import pstats
import time
from typing import Any

from benchmarks._common import Result, cli, result
from benchmarks.rl_synth import fanout_facts
from benchmarks.rl_workflows import fanout
from ledgerflow.machines import RunState, advance, evolve

CATEGORIES = ("transitions", "pydantic", "msgspec", "contracts", "machines", "other")


def category(func: tuple[str, int, str]) -> str:
    """Which library a cProfile entry belongs to."""
    filename, _, name = func
    where = f"{filename}:{name}"
    if "/transitions/" in filename:
        return "transitions"
    if "pydantic" in where:
        return "pydantic"
    if "msgspec" in where:
        return "msgspec"
    if "/contracts/" in filename:
        return "contracts"
    if "/machines/" in filename:
        return "machines"
    return "other"


def shares(stats: pstats.Stats) -> dict[str, float]:
    """Share of total self-time (tottime) per category, in percent."""
    totals = dict.fromkeys(CATEGORIES, 0.0)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for func, (_cc, _nc, tottime, _ct, _callers) in raw.items():
        totals[category(func)] += tottime
    whole = sum(totals.values()) or 1.0
    return {k: 100 * v / whole for k, v in totals.items()}


def top(stats: pstats.Stats, count: int = 12) -> list[dict[str, Any]]:
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    whole = sum(v[2] for v in raw.values()) or 1.0
    rows = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:count]
    return [{"function": f"{f[0].rsplit('/', 2)[-1]}:{f[1]}({f[2]})",
             "self_pct": 100 * v[2] / whole, "calls": v[1]} for f, v in rows]


def _decide_all(facts: list[Any], run_id: str, profiler: cProfile.Profile | None = None,
                ) -> tuple[RunState, int, float, list[Any]]:
    """Decide every fact; time only the task outcomes (not the start and the plan check)."""
    state = RunState(run_id=run_id)
    produced: list[Any] = []
    for fact in facts[:2]:
        produced += advance(state, fact, fanout)
    clock = time.perf_counter
    if profiler is not None:
        profiler.enable()
    t0 = clock()
    for fact in facts[2:]:
        produced += advance(state, fact, fanout)
    seconds = clock() - t0
    if profiler is not None:
        profiler.disable()
    return state, len(produced), seconds, produced


def run(n: int, db: str) -> Result:
    del db  # no I/O
    facts = list(fanout_facts(n, "core"))
    _decide_all(facts, "warm")  # warm caches (pydantic validators, imports)
    state, events, seconds, produced = _decide_all(facts, "core")
    assert state.status.value == "completed"
    # evolve alone (what replay does), on the events the decider produced
    t0 = time.perf_counter()
    fold_state = RunState(run_id="core")
    for e in produced:
        evolve(fold_state, e)
    evolve_s = time.perf_counter() - t0
    assert fold_state.status.value == "completed"
    profiler = cProfile.Profile()
    _decide_all(facts, "prof", profiler)
    stats = pstats.Stats(profiler)
    decisions = len(facts) - 2
    return result(system="ledgerflow", workload="Core", n=n, steps=decisions, seconds=seconds,
                  events=events, us_per_decision=seconds / decisions * 1e6,
                  evolve_us_per_event=evolve_s / len(produced) * 1e6,
                  shares_pct=shares(stats), top=top(stats))


if __name__ == "__main__":
    cli(run)
