"""The ledgerflow benchmarks at tiny sizes: the scripts keep working and count right.

Never asserts on time (a busy CI machine must not fail a test); only that
every task completed and the logs hold the events they should.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import (  # noqa: E402
    compare,
    profile_ledgerflow,
    raw_aiosqlite,
    raw_sqlite3,
    raw_sqlite3_onetx,
    rl_chain,
    rl_core,
    rl_fanout,
    rl_replay,
    rl_steps,
)
from benchmarks._common import fresh_db  # noqa: E402


@pytest.fixture
def db(tmp_path: Path) -> str:
    return fresh_db(str(tmp_path))


def test_chain_completes_every_task_in_order(db: str) -> None:
    r = rl_chain.run(6, db)
    assert r["completed"] == 6
    assert r["last_output"] == 6  # each task got the previous one's output
    # start, plan proposed + accepted + first ready + dispatch, 5 per task after
    assert r["events"] == 5 * 6 + 4
    assert r["store_sync"] == "FULL"


def test_fanout_completes_and_group_commits(db: str) -> None:
    r = rl_fanout.run(12, db)
    assert r["completed"] == 13  # 12 workers and the join
    assert r["steps"] == 14
    assert r["events"] == 5 * 12 + 9
    assert r["commits"] < 12  # completions share commits


def test_replay_folds_the_whole_log_and_stops_at_n(tmp_path: Path) -> None:
    db = fresh_db(str(tmp_path))
    r = rl_replay.run(2_000, db)
    assert r["events"] == r["n"] >= 1_990
    assert r["at"] == rl_replay.AT
    assert r["plan_seq"] == 3
    again = rl_replay.run(2_000, db)  # reuses the log it built
    assert again["events"] == r["events"]


def test_core_profile_splits_time_by_library() -> None:
    r = rl_core.run(30, "")
    assert r["steps"] == 31  # 30 workers and the join
    assert r["events"] == 5 * 30 + 9
    assert set(r["shares_pct"]) == set(rl_core.CATEGORIES)
    assert sum(r["shares_pct"].values()) == pytest.approx(100)
    assert r["top"]


@pytest.mark.parametrize("script", [raw_aiosqlite, raw_sqlite3, raw_sqlite3_onetx])
def test_raw_baselines_write_four_events_per_task(script: object, db: str) -> None:
    r = script.run(7, db)  # type: ignore[attr-defined]
    assert r["events"] == 28


def test_compare_summarises_and_judges_goals() -> None:
    def w(metric: str, value: float, **extra: object) -> dict[str, object]:
        return {"n": 200, metric: value, **extra}

    runs: dict[tuple[str, str], list[dict[str, Any]]] = {
        ("W1", "ledgerflow"): [w("steps_per_s", 3000.0), w("steps_per_s", 3200.0)],
        ("W1", "Burr"): [w("steps_per_s", 900.0)],
        ("W1", "eventsourcing"): [{"error": ["boom"]}],
        ("W2", "ledgerflow"): [w("steps_per_s", 12000.0, commits=4)],
    }
    summary = compare.summarise(runs)
    assert summary["W1|ledgerflow"]["steps_per_s"]["median"] == 3100.0
    assert summary["W1|eventsourcing"]["errors"] == [["boom"]]
    judged = {g: ok for g, ok, _ in compare.goals(summary)}
    assert judged["W1 >= 3x Burr"] is True
    assert judged["W2 >= 10,000 steps/s"] is True
    # Peers that were not measured are not judged (no "nanx" row).
    assert "W2 >= 2x Burr" not in judged
    assert "W1 (durable_dispatch) >= 3x Burr" not in judged
    md = compare.table(summary, {"date": "today", "machine": "m", "runs": 2})
    assert "| ledgerflow | 200 | 3,100 (3,000\u20133,200)" in md
    assert "ERROR" in md
    first = next(b for b in compare.plan(quick=True, peers=False) if b.workload == "W1")
    assert first.module == "rl_chain"


def test_profile_groups_name_modules_that_exist() -> None:
    # The grouping matches cProfile's file names; a module split or renamed
    # (machines/runtime.py became orchestrator/driver/calls/leasing) would
    # silently move its time to another group.
    for group, needles in profile_ledgerflow.GROUPS:
        for needle in needles:
            if needle.endswith(".py") and needle.startswith("machines/"):
                assert (ROOT / needle).exists(), f"{group}: {needle} is no module any more"
    assert profile_ledgerflow.group(
        (str(ROOT / "ledgerflow" / "machines" / "driver.py"), 1, "drive")
    ) == "machines runtime (shell)"


def test_steps_benchmark_measures_every_way_of_stepping(tmp_path: Path) -> None:
    out = rl_steps.measure(8, runs=1, parallel=2, directory=str(tmp_path))
    assert set(out) == {"n", "sequential_us_per_step", "parallel_agents", "parallel_us_per_step",
                        "sequential_normal_us_per_step", "raw_aiosqlite_commit_per_step_us",
                        "sequential_vs_raw"}
    assert out["raw_aiosqlite_commit_per_step_us"] > 0
