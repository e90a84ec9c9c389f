"""The issue's reliability story: three worker processes share 100 runs (30 on SQLite);
one is SIGKILLed mid-way, one SIGSTOPped past its lease and SIGCONTed. Every run
completes, no side effect is performed twice, every log verifies, and the paused
worker's late appends are refused by the fence."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from pool_chaos import ChaosOutcome, run_chaos
from pool_harness import PgPlace, WorkerProcess
from pool_sink import Sink
from pool_workflows import EFFECT_TASK

pytestmark = pytest.mark.slow


def assert_story_held(outcome: ChaosOutcome, runs: int) -> None:
    assert outcome.statuses == Counter({"completed": runs}), outcome.statuses
    assert outcome.unverified == {}, outcome.unverified
    # The side effect: one performance per run, under the key its log dispatched it with.
    per_key = Counter(e.key for e in outcome.effects)
    per_task = Counter((e.run_id, e.task_id) for e in outcome.effects)
    assert [k for k, n in per_key.items() if n > 1] == []  # no key performed twice
    assert [t for t, n in per_task.items() if n > 1] == []  # no task performed under two keys
    assert set(per_task) == {(r, EFFECT_TASK) for r in outcome.run_ids}  # every run's once
    for effect in outcome.effects:
        assert outcome.logged_keys[effect.run_id] == {effect.key}  # one key across attempts
    # The chaos really landed: the killed and the paused workers held runs when it did...
    assert outcome.killed_held
    assert outcome.paused_held
    # ...and the paused one, woken, was stopped by the fence, not left to append: its
    # renewal (another fence) or its append (LeaseLostError) was refused, every drive
    # it held ended as a lost run, none as a failure (verify_run above: nothing landed).
    assert outcome.paused_stats["lost"] >= 1, outcome.paused_stderr
    assert outcome.lost_lines >= 1, outcome.paused_stderr
    assert outcome.paused_stats["failed"] == 0, outcome.paused_stderr
    assert outcome.stale_seq_refusals == 0, outcome.paused_stderr
    assert outcome.survivor_stats["finished"] > 0


def report_numbers(outcome: ChaosOutcome) -> str:
    attempts = Counter(key for key, _run, task in outcome.attempts if task == EFFECT_TASK)
    per_key = Counter(e.key for e in outcome.effects)
    return (f"runs={len(outcome.run_ids)} killed_held={len(outcome.killed_held)} "
            f"paused_held={len(outcome.paused_held)} effects={len(outcome.effects)} "
            f"duplicate_performances={sum(n - 1 for n in per_key.values())} "
            f"effect_keys_attempted_twice={sum(n > 1 for n in attempts.values())} "
            f"fence_refusals={outcome.fence_refusals} lost_lines={outcome.lost_lines} "
            f"stale_seq_refusals={outcome.stale_seq_refusals} "
            f"stats={outcome.stats}")


async def test_pool_survives_a_kill_and_a_pause_on_postgres(
    pg: PgPlace, tmp_path: Path, spawned: list[WorkerProcess],
) -> None:
    sink = Sink(pg.dsn, pg.sink_schema)
    outcome = await run_chaos(pg.url, sink, runs=100, base=tmp_path, spawned=spawned)
    print(report_numbers(outcome))
    assert_story_held(outcome, 100)


async def test_pool_survives_a_kill_and_a_pause_on_one_sqlite_file(
    tmp_path: Path, spawned: list[WorkerProcess],
) -> None:
    sink = Sink(str(tmp_path / "sink.db"))
    outcome = await run_chaos(str(tmp_path / "runs.db"), sink, runs=30, base=tmp_path,
                              spawned=spawned)
    print(report_numbers(outcome))
    assert_story_held(outcome, 30)


async def test_pool_survives_a_kill_and_a_pause_with_attempts_spread_over_it_on_postgres(
    pg: PgPlace, tmp_path: Path, spawned: list[WorkerProcess],
) -> None:
    # One attempt at a time per worker in its own process: the other attempts of the
    # runs it drives are claimed by the other workers, and the kill and the pause land
    # in claimed attempts too.
    sink = Sink(pg.dsn, pg.sink_schema)
    outcome = await run_chaos(pg.url, sink, runs=60, base=tmp_path, spawned=spawned,
                              options=("--task-concurrency", "1"))
    print(report_numbers(outcome))
    assert_story_held(outcome, 60)
    assert sum(s["tasks_claimed"] for s in outcome.stats) > 0
