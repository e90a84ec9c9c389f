"""The pool benchmark's ledgerflow path, tiny: worker processes drain the queue, counts add up.

SQLite only (no PostgreSQL, no DBOS), real worker processes on one file.
Never asserts on time: only that every submitted run completed exactly once
and its log holds the events it should.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import pool, pool_measure  # noqa: E402


def _events_per_run(k: int) -> int:
    # RunSubmitted, RunStarted, PlanProposed, PlanAccepted, RunCompleted, and per task
    # TaskReady, TaskDispatched, OutputReceived, OutputAccepted, TaskSucceeded.
    return 5 + 5 * k


def test_two_sqlite_worker_processes_complete_every_submitted_run_once(tmp_path: Path) -> None:
    r = pool_measure.run("ledgerflow-sqlite", workers=2, workload="noop", n=6, k=3,
                         concurrency=2, directory=str(tmp_path))
    assert r["completed"] == 6
    assert len(r["per_worker"]) == 2
    assert sum(r["per_worker"]) == 6  # each run finished by exactly one worker
    assert r["lost"] == r["failed"] == 0
    assert r["events"] == 6 * _events_per_run(3)
    assert r["tasks_per_s"] == pytest.approx(r["runs_per_s"] * 3)
    assert r["worker_cpu_s"] > 0
    assert not list(tmp_path.glob("pool.db*"))  # the measurement's file is removed


def test_sleeping_agents_complete_on_one_worker(tmp_path: Path) -> None:
    r = pool_measure.run("ledgerflow-sqlite", workers=1, workload="sleep", n=2, k=2,
                         directory=str(tmp_path))
    assert r["completed"] == 2
    assert r["per_worker"] == [2]
    assert r["events"] == 2 * _events_per_run(2)


def test_the_table_has_a_row_per_measurement_and_names_a_failure() -> None:
    ok = {"runs_per_s": 10.0, "tasks_per_s": 40.0, "per_worker": [3, 2], "worker_cpu_s": 0.5,
          "n": 5}
    text = pool.table({("ledgerflow-sqlite", "noop", 2): [ok, {**ok, "runs_per_s": 20.0}],
                       ("dbos-pg", "noop", 1): [{"error": ["connection refused"]}]})
    rows = text.splitlines()[2:]
    dash = "\u2013"  # the table's en dash in "median (min-max)"
    assert rows[0].startswith(
        f"| ledgerflow, one SQLite file | noop | 2 | 15 (10{dash}20) | 40 (40{dash}40) | 100.0 |")
    assert "3 / 2" in rows[0]
    assert "failed: connection refused" in rows[1]
